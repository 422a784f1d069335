#!/bin/sh
# Makes sure Debian's protoc (protobuf-compiler, with the well-known .proto files of
# libprotobuf-dev), its gRPC Python plugin (protobuf-compiler-grpc) and the Python runtime
# (python3-grpcio, python3-protobuf) are installed, installing them with apt-get if not.
# Exit 0: ready. Exit 3: they are missing and cannot be installed here (the message says why).
set -u
ready() {
  command -v protoc >/dev/null 2>&1 &&
    command -v grpc_python_plugin >/dev/null 2>&1 &&
    [ -e /usr/include/google/protobuf/struct.proto ] &&
    /usr/bin/python3 -c 'import grpc, google.protobuf' >/dev/null 2>&1
}
ready && exit 0
PACKAGES="protobuf-compiler libprotobuf-dev protobuf-compiler-grpc python3-grpcio python3-protobuf"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "apt-get is not available: install the Debian packages $PACKAGES" >&2
  exit 3
fi
if [ "$(id -u)" != 0 ]; then
  echo "not root, so apt-get cannot install the Debian packages $PACKAGES" >&2
  exit 3
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends $PACKAGES >/dev/null 2>&1; then
  apt-get update >/dev/null 2>&1
  if ! apt-get install -y --no-install-recommends $PACKAGES >&2; then
    echo "apt-get could not install $PACKAGES" >&2
    exit 3
  fi
fi
if ! ready; then
  echo "installed $PACKAGES, yet protoc, grpc_python_plugin or the Python modules are missing" >&2
  exit 1
fi
