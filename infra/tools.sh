# Sourced by infra/test and .ci/run: installs the pinned Python tools into .tools/venv once
# (moto for DynamoDB + Secrets Manager on loopback, the SAM CLI for template validation,
# cargo-lambda and Zig for Lambda builds and the runtime-path test, the Standard Webhooks verifier)
# and puts them on PATH.
# Reinstalls when a pin changes.
MOTO_VERSION=5.2.5
SAM_CLI_VERSION=1.170.0
CARGO_LAMBDA_VERSION=1.9.2
ZIG_VERSION=0.15.2
# The webhook tests verify deliveries with the specification's Python library, not our code.
STANDARDWEBHOOKS_VERSION=1.1.0

TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.tools"
TOOLS_VENV="$TOOLS_DIR/venv"
TOOLS_PINS="moto[server]==$MOTO_VERSION aws-sam-cli==$SAM_CLI_VERSION cargo-lambda==$CARGO_LAMBDA_VERSION ziglang==$ZIG_VERSION standardwebhooks==$STANDARDWEBHOOKS_VERSION"

if [ "$(cat "$TOOLS_VENV/.pins" 2>/dev/null)" != "$TOOLS_PINS" ]; then
  echo "installing test tools: $TOOLS_PINS" >&2
  rm -rf "$TOOLS_VENV"
  python3 -m venv "$TOOLS_VENV"
  "$TOOLS_VENV/bin/pip" install --quiet --disable-pip-version-check $TOOLS_PINS >&2
  echo "$TOOLS_PINS" > "$TOOLS_VENV/.pins"
fi
export PATH="$TOOLS_VENV/bin:$PATH"
export SAM_CLI_TELEMETRY=0
