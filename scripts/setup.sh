#!/usr/bin/env bash
# Set up everything the lab needs on this machine, idempotently:
#   Docker Compose v2, mmdebstrap (offline base image), the test peers (socat, ncat, iperf3),
#   a virtualenv in .venv with the lab and its test tools, and the lab's images.
# Needs a running Docker engine. Installs Debian packages with apt (as root, or through sudo).
# Packages come from this host's own apt sources; no mirror is named here.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
fi
have_apt() { command -v apt-get >/dev/null 2>&1; }

apt_updated=""
apt_install() {
  have_apt || die "missing $*: install it with your package manager"
  if [ -z "$apt_updated" ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# 1. Docker engine
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (is it running? may this user use it?). Then run: .venv/bin/lab doctor"

# 2. Compose v2. Debian bookworm ships only v1.29; its trixie suite has 2.x, which needs only libc6.
#    The mirror is found the way lab/images.py host_debian_mirror finds it: a URI ending in /debian.
if ! docker compose version >/dev/null 2>&1; then
  say "installing Docker Compose v2 (Debian trixie's docker-compose package)"
  have_apt || die "docker compose v2 is missing: install the docker-compose-plugin package"
  uri=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk '/^URIs:/ {for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) {print $i; exit}}' "$f")
    [ -n "$uri" ] && break
  done
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\/.*\/debian\/?$/) {print $i; exit}}' /etc/apt/sources.list)
  fi
  [ -n "$uri" ] || die "cannot find this host's Debian mirror in /etc/apt; install docker compose v2 by hand"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/lists/partial"
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: %s\n' "$uri" "$keyring" > "$tmp/trixie.sources"
  opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$tmp" -o "Dir::State::Lists=$tmp/lists"
        -o "APT::Sandbox::User=root")
  $SUDO apt-get "${opts[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${opts[@]}" install -y -qq --no-install-recommends docker-compose >/dev/null
  docker compose version >/dev/null 2>&1 || die "installed docker-compose but \`docker compose version\` still fails"
fi
say "$(docker compose version)"

# 3. Tools: mmdebstrap builds the base image offline; socat/ncat/iperf3 are test peers; chromium for the report.
missing=()
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
command -v socat >/dev/null 2>&1 || missing+=(socat)
command -v ncat >/dev/null 2>&1 || missing+=(ncat)
command -v iperf3 >/dev/null 2>&1 || missing+=(iperf3)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
# Headless Chromium opens the HTML reports in the browser tests; a CJK font draws the Chinese
# messages in its screenshots.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || missing+=(fonts-wqy-microhei)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt_install "${missing[@]}"
fi

# 4. The lab in a virtualenv.
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PYTHON" -m venv .venv || { apt_install python3-venv && "$PYTHON" -m venv .venv; }
fi
if ! .venv/bin/python -c 'import lab.cli, pytest, pytest_docker' >/dev/null 2>&1 || [ pyproject.toml -nt .venv/.installed ]; then
  say "installing the lab and its test tools into .venv"
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[test]'
  touch .venv/.installed
fi
# The lab is installed editable, so pip compiled none of it: compile it here, or every `lab` command
# compiles its 80 modules again (0.16 s) where Python may not write bytecode (PYTHONDONTWRITEBYTECODE).
.venv/bin/python -m compileall -q lab >/dev/null

# 5. Images: the base (pulled, or built offline) and the node image.
say "building images"
.venv/bin/lab build
