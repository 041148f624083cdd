# Sourced by scripts/test-web and scripts/bench-web: headless Debian chromium, node and npm
# (apt-get, only when missing), playwright-core in www/e2e (`npm ci`, no browser download).
# Expects ROOT and say(); sets E2E (www/e2e) and exports CHROMIUM.

E2E="$ROOT/www/e2e"
SUDO=""
if [[ "$(id -u)" != 0 ]]; then SUDO="sudo"; fi
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [[ ${#missing[@]} -gt 0 ]]; then
    say "apt-get install ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
export CHROMIUM="${CHROMIUM:-$(command -v chromium)}"
say "$("$CHROMIUM" --version 2>/dev/null | tail -n1), node $(node --version)"

# npm ci wipes node_modules: skip it when the installed tree already matches the lock file.
if ! cmp -s "$E2E/package-lock.json" "$E2E/node_modules/.package-lock.json.ci" 2>/dev/null; then
    say "npm ci"
    (cd "$E2E" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$E2E/package-lock.json" "$E2E/node_modules/.package-lock.json.ci"
fi
