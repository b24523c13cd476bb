#!/bin/bash
# Rules the compiler can't enforce, checked by grep (in the spirit of s2n's
# grep_simple_mistakes.sh). Prints one line per violation; exit 1 if any.
set -u
cd "$(dirname "$0")/.."
bad=0
violation() { printf 'check-source: %s\n' "$*"; bad=1; }

layer_files() { find "src/$1" -name '*.[ch]'; }

# Layers below fs never see FUSE; core and store never see JSON; core never does I/O.
for layer in common core store auth api; do
	for f in $(layer_files $layer); do
		grep -Hn '#include *<fuse' "$f" && violation "$f: FUSE below the fs layer"
	done
done
for layer in common core store auth; do
	for f in $(layer_files $layer); do
		grep -Hn '#include *<cjson' "$f" && violation "$f: JSON below the api layer"
	done
done
for f in $(layer_files core); do
	grep -HnE '#include *<(sqlite3|stdio|fcntl|unistd)\.h>' "$f" &&
		violation "$f: I/O in core"
done
# Layers point one way (src/meson.build): common <- core <- store <- auth <- api <- {fs, tools}.
# A layer's files include headers of their own layer and the layers below it, never above; fs and
# tools are peers, so fs includes no tools/ header. tools may include anything; bench/ and tests/
# are exempt. (Meson links each layer only with the layers below, but every library sees all of
# src/ on its include path, so only this check keeps a header of a higher layer out.)
allowed=
for layer in common core store auth api fs; do
	allowed="$allowed $layer"
	for f in $(layer_files $layer); do
		while IFS=: read -r line text; do
			dir=${text#*include}
			dir=${dir#*[\"<]}
			dir=${dir%%/*}
			case " $allowed " in
			*" $dir "*) ;;
			*) violation "$f:$line: the $layer layer includes $dir/ (it may include:$allowed)" ;;
			esac
		done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*["<](common|core|store|auth|api|fs|tools)/' "$f")
	done
done
# Library layers return errors; only fs and tools log (secrets can't leak through a log call).
for layer in core store auth api; do
	for f in $(layer_files $layer); do
		grep -HnE '\bkms_log(_error|_warning|_info|_debug)?\(|\b(printf|fprintf|puts|perror|syslog)\(' "$f" &&
			violation "$f: logging or printing in a library layer"
	done
done
# Secrets: constant-time comparison, no realloc of secret buffers, no getenv in the daemon.
for f in $(find src -name '*.[ch]'); do
	grep -HnE '\bmemcmp\(' "$f" | grep -v 'AUTH_PREFIX' && violation "$f: memcmp (use core_equal)"
	grep -Hn '\bgetenv(' "$f" && violation "$f: getenv (use secure_getenv)"
	grep -HnE '\b(gets|strcpy|sprintf|vsprintf)\(' "$f" && violation "$f: unbounded string function"
done
grep -Hn 'realloc(' src/common/kms_buf.c && violation "kms_buf.c must not realloc (secrets)"
# Every case file is registered as a test (git's t/meson.build check, done by meson too).
for f in tests/integration/cases/*.sh; do
	grep -q "$(basename "$f")" tests/integration/meson.build ||
		violation "$f is not registered in tests/integration/meson.build"
done
exit $bad
