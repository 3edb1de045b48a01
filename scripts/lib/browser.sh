# Sourced by scripts/test and scripts/screenshots: Debian's Chromium and chromedriver for the
# browser tests, installed when missing and we may (root with apt-get). Sets EA_REQUIRE_BROWSER=1
# once they are there, so that a browser that cannot start is a failure instead of a skip.
browser_installed() {
  [[ -x "${EA_CHROMIUM:-/usr/bin/chromium}" && -x "${EA_CHROMEDRIVER:-/usr/bin/chromedriver}" ]]
}
if ! browser_installed && command -v apt-get >/dev/null && [[ "$(id -u)" == "0" ]]; then
  echo "== installing chromium and chromium-driver for the browser tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q && apt-get install -y -q chromium chromium-driver ||
    echo "could not install chromium: the browser tests will be skipped" >&2
fi
if browser_installed; then
  export EA_REQUIRE_BROWSER=1
else
  echo "== chromium/chromedriver not installed: the browser tests will be skipped"
fi
