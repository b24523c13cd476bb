#!/bin/bash
# Static analysis, counted as one test by scripts/run-tests:
#   cppcheck  (warning, performance, portability; errors) over every file the build compiles
#   clang-tidy (.clang-tidy: clang-analyzer-* and bugprone-*) over src/ and bench/
# Usage: .ci/lint.sh BUILD_DIR   (a configured meson build: its compile_commands.json)
# Findings print as file:line: message; exit 1 if any, 2 if a tool is missing.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: .ci/lint.sh BUILD_DIR}
db=$build/compile_commands.json
jobs=$(nproc 2>/dev/null || echo 2)
bad=0

for tool in cppcheck clang-tidy; do
	command -v "$tool" >/dev/null ||
		{ echo "lint: $tool is not installed (apt-get install cppcheck clang-tidy)"; exit 2; }
done
[ -f "$db" ] || { echo "lint: no $db (configure the build first)"; exit 2; }

# Intentional cases carry an inline `cppcheck-suppress` with the reason beside them.
if ! cppcheck --project="$db" --enable=warning,performance,portability --inline-suppr \
	--suppress=missingIncludeSystem --error-exitcode=1 --quiet -j "$jobs" \
	--template='{file}:{line}: cppcheck {severity} [{id}]: {message}' 2>&1; then
	echo "lint: cppcheck found the problems above"
	bad=1
fi

# One file per clang-tidy process: clang-tidy 14 carries va_list state from one file into the
# next and then reports a va_start'ed list as uninitialised.
out=$(find src bench -name '*.c' -print0 | sort -z |
	xargs -0 -P "$jobs" -n 1 clang-tidy -p "$build" --quiet 2>/dev/null |
	grep -E '^[^ ].*: (warning|error): ')
if [ -n "$out" ]; then
	echo "$out"
	echo "lint: clang-tidy found the problems above"
	bad=1
fi
exit $bad
