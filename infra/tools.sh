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
