# Sourced by scripts/test: installs the Debian packages the checks need (a browser for the
# dashboard test, docker-compose to validate the compose file) when they are missing.
# Needs root, as on CI; elsewhere it says what to install and the tests that need them skip.

ensure_debian_packages() {
  local missing=()
  for spec in "$@"; do
    local package="${spec%%:*}" command="${spec##*:}"
    command -v "$command" >/dev/null 2>&1 || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "==> missing system packages: ${missing[*]} (install them with apt-get as root)" >&2
    return 0
  fi
  echo "==> installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
