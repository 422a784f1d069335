#!/bin/sh
# Runs before `npm start` and the `jobqueue` command: installs the dependencies on a fresh checkout,
# builds dist/ when it is missing or older than the sources, and the dashboard (ui/dist) likewise,
# so that `npm start` stays the one command. Quiet when there is nothing to do.
set -e
cd "$(dirname "$0")/.."
if [ ! -e node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
if [ ! -e dist/.tsbuildinfo ] ||
  [ -n "$(find src gen package.json tsconfig.json tsconfig.build.json -newer dist/.tsbuildinfo -print -quit)" ]; then
  npm run --silent build
fi
if [ ! -e ui/dist/index.html ] ||
  [ -n "$(find ui -path ui/dist -prune -o -newer ui/dist/index.html -print -quit)" ]; then
  npm run --silent build:ui
fi
