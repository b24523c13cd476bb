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
for layer in common core audit store auth; do
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
for layer in common core audit store auth api fs; do
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
		done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*["<](common|core|audit|store|auth|api|fs|tools)/' "$f")
	done
done
# Library layers return errors; only fs and tools log (secrets can't leak through a log call).
for layer in core audit store auth api; do
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
# Docs: every relative link in README.md and docs/*.md names a file that exists and, after '#', a
# heading of that file (GitHub's anchors: lower case, punctuation dropped, spaces to '-', "-N"
# for the Nth repeat). Links inside code blocks and code spans are not links.
md_links() { # FILE: LINE<TAB>TARGET for each relative link
	awk '/^[ \t]*(```|~~~)/ { code = !code; next }
	!code {
		line = $0
		gsub(/`[^`]*`/, "", line)
		while (match(line, /\]\([^)[:space:]]+\)/)) {
			t = substr(line, RSTART + 2, RLENGTH - 3)
			line = substr(line, RSTART + RLENGTH)
			if (t !~ /^[a-z]+:/)
				print NR "\t" t
		}
	}' "$1"
}
md_anchors() { # FILE: one anchor per heading
	awk '/^[ \t]*(```|~~~)/ { code = !code; next }
	!code && /^#+ / {
		h = tolower($0)
		sub(/^#+ +/, "", h)
		gsub(/[^a-z0-9 _-]/, "", h)
		gsub(/ /, "-", h)
		print (seen[h]++ ? h "-" seen[h] - 1 : h)
	}' "$1"
}
for f in README.md docs/*.md; do
	while IFS=$'\t' read -r line target; do
		path=${target%%#*}
		anchor=
		[ "$path" = "$target" ] || anchor=${target#*#}
		dest=$f
		[ -z "$path" ] || dest=$(dirname "$f")/$path
		if [ ! -e "$dest" ]; then
			violation "$f:$line: link to $target: no such file"
		elif [ -n "$anchor" ] && ! md_anchors "$dest" | grep -qxF -- "$anchor"; then
			violation "$f:$line: link to $target: no such heading in $dest"
		fi
	done < <(md_links "$f")
done
# docs/conformance.md names test files, never test functions (a rename would make them stale):
# every test file it names exists, and no unit test's TEST() name (outside code spans) is in it.
for name in $(grep -oE '`[a-z0-9/*-]+\.(c|sh)`' docs/conformance.md | tr -d '`' | sort -u); do
	case $name in
	*/*) path=$name ;;
	test-*.c) path=tests/unit/$name ;;
	*.sh) path=tests/integration/cases/$name ;;
	*) continue ;;
	esac
	compgen -G "$path" >/dev/null || violation "docs/conformance.md names $path, which does not exist"
done
for t in $(sed 's/`[^`]*`//g' docs/conformance.md |
	grep -owFf <(sed -n 's/^TEST(\([a-z0-9]*_[a-z0-9_]*\)).*/\1/p' tests/unit/test-*.c) | sort -u); do
	violation "docs/conformance.md names the test function $t (name its file instead)"
done
# The tree is formatted by .clang-format (docs/hacking.md, Formatting and lint).
if command -v clang-format >/dev/null; then
	for f in $(git ls-files --cached --others --exclude-standard 'src/*.[ch]' 'tests/*.[ch]' 'bench/*.[ch]' 'examples/*.[ch]' 2>/dev/null ||
		find src tests bench examples -name '*.[ch]'); do
		clang-format --dry-run --Werror "$f" >/dev/null 2>&1 ||
			violation "$f is not formatted (clang-format -i $f)"
	done
else
	violation "clang-format is not installed (apt-get install clang-format): formatting not checked"
fi
exit $bad
