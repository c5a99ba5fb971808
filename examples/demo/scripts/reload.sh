#!/bin/sh
set -eu
echo "reloaded config of $1"
