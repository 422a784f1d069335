#!/usr/bin/env bash
# npm run test:ui: the dashboard in a real browser (Debian's chromium driven by playwright-core,
# whose own browser download cannot be reached here) against a real server. Installs chromium when
# it is missing, builds the dashboard, runs test/ui. Screenshots go to .tmp/ui-screenshots (CI
# artifacts); UPDATE_DOCS_SCREENSHOTS=1 also rewrites the README's in docs/.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v chromium >/dev/null 2>&1; then
  echo "==> installing chromium (apt-get install -y chromium)"
  if ! apt-get install -y -qq chromium >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq chromium >/dev/null
  fi
fi
npm run --silent build:ui
exec npx vitest run --config vitest.ui.config.ts "$@"
