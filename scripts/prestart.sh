#!/bin/sh
# Runs before `npm start`: installs the dependencies on a fresh checkout, and builds dist/ when it
# is missing or older than the sources, so that `npm start` stays the one command.
set -e
cd "$(dirname "$0")/.."
if [ ! -e node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
if [ ! -e dist/.tsbuildinfo ] ||
  [ -n "$(find src gen package.json tsconfig.json tsconfig.build.json -newer dist/.tsbuildinfo -print -quit)" ]; then
  npm run --silent build
fi
