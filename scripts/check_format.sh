#!/usr/bin/env bash
# Fails when a C++ file of the repository differs from clang-format's output (.clang-format).
# Fix with: git ls-files '*.cc' '*.h' | xargs clang-format -i
set -euo pipefail
cd "$(dirname "$0")/.."
git ls-files -co --exclude-standard '*.cc' '*.h' | xargs clang-format --dry-run -Werror
echo "check_format: every C++ file is formatted"
