# Sourced by infra/test and .ci/run: installs the pinned Python tools into .tools/venv once
# (moto for DynamoDB + Secrets Manager on loopback, the SAM CLI for template validation,
# cargo-lambda and Zig for Lambda builds and the runtime-path test, the Standard Webhooks verifier,
# Playwright and axe-core for the browser tests) and puts them on PATH; installs Debian's
# Chromium when missing.
# Reinstalls when a pin changes.
MOTO_VERSION=5.2.5
SAM_CLI_VERSION=1.170.0
CARGO_LAMBDA_VERSION=1.9.2
ZIG_VERSION=0.15.2
# The webhook tests verify deliveries with the specification's Python library, not our code.
STANDARDWEBHOOKS_VERSION=1.1.0
# The browser tests drive Debian's Chromium with Playwright (never a downloaded browser) and check
# accessibility with axe-core (bundled by axe-playwright-python).
PLAYWRIGHT_VERSION=1.65.2
AXE_PLAYWRIGHT_VERSION=0.1.8

TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.tools"
TOOLS_VENV="$TOOLS_DIR/venv"
TOOLS_PINS="moto[server]==$MOTO_VERSION aws-sam-cli==$SAM_CLI_VERSION cargo-lambda==$CARGO_LAMBDA_VERSION ziglang==$ZIG_VERSION standardwebhooks==$STANDARDWEBHOOKS_VERSION playwright==$PLAYWRIGHT_VERSION axe-playwright-python==$AXE_PLAYWRIGHT_VERSION"

if [ "$(cat "$TOOLS_VENV/.pins" 2>/dev/null)" != "$TOOLS_PINS" ]; then
  echo "installing test tools: $TOOLS_PINS" >&2
  rm -rf "$TOOLS_VENV"
  python3 -m venv "$TOOLS_VENV"
  "$TOOLS_VENV/bin/pip" install --quiet --disable-pip-version-check $TOOLS_PINS >&2
  echo "$TOOLS_PINS" > "$TOOLS_VENV/.pins"
fi
export PATH="$TOOLS_VENV/bin:$PATH"

# Debian's Chromium, from the distribution's packages.
export BROKER_TEST_CHROMIUM=/usr/bin/chromium
if [ ! -x "$BROKER_TEST_CHROMIUM" ]; then
  echo "installing Debian's chromium for the browser tests" >&2
  as_root=""
  [ "$(id -u)" = 0 ] || as_root="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $as_root apt-get install -y -q chromium >&2 \
    || { $as_root apt-get update -q >&2 && $as_root apt-get install -y -q chromium >&2; }
fi
export SAM_CLI_TELEMETRY=0

# moto (DynamoDB, DynamoDB Streams, Secrets Manager, SQS) on a free loopback port until the calling
# script exits, and the SDK pointed at it: dummy credentials, no profile.
start_moto() {
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p target
  moto_server -H 127.0.0.1 -p "$port" > target/moto.log 2>&1 &
  moto_pid=$!
  trap 'kill "$moto_pid" 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null; then break; fi
    kill -0 "$moto_pid" 2>/dev/null || { cat target/moto.log >&2; echo "moto did not start" >&2; exit 1; }
    sleep 0.2
  done
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
  export AWS_EC2_METADATA_DISABLED=true
  unset AWS_PROFILE AWS_SESSION_TOKEN
}
