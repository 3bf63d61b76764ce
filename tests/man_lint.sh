#!/bin/sh
# tests/man_lint.sh — the man pages (TAP): clean under `mandoc -T lint`, cross-references that
# resolve, and every long option a program's --help prints documented in its page.
#
# One check per page:
#   - `mandoc -T lint` prints nothing: no error, warning or STYLE message (lines of at most 80
#     bytes, no .Os argument, a new sentence on a new line, ...);
#   - every .Xr resolves. At the default -T lint level mandoc (1.14.6, Debian bookworm) looks
#     an .Xr up only in its hard-wired base manpath (/usr/share/man), whatever -M, -m or
#     MANPATH say, so pages that are not installed are never found; with -W style it searches
#     the configured manpath instead. So a scratch tree man1/ man3/ man5/ man7/ man8/ holds
#     our pages, makewhatis indexes it, and `mandoc -T lint -W style -m TREE` searches it
#     before the system's manpath: our pages must all resolve. A second run at the default
#     level catches anything below STYLE and ignores only "referenced manual not found" for
#     our own pages, which the first run has resolved. An older mandoc that cannot search a
#     private tree at all is detected with a probe; then our references are checked by name
#     against the pages in man/ (a note says so);
#   - references to system pages (fdatasync(2), systemd.exec(5), ...) are checked the same
#     way, against the installed manual. A minimal machine may lack those pages (manpages-dev,
#     systemd), which says nothing about ours: "referenced manual not found" for a page outside
#     our set is reported as a note and tolerated. Names that look like ours (allocdb*,
#     liballocdb*) are never tolerated, so a misspelt cross-reference still fails;
#   - no page names one of ours as plain text "allocdbd(8)": that would escape the check above;
#   - SEE ALSO lists every other AllocDB page.
# One check per program (allocdbd, allocdb, allocdb-bench, allocdb-inspect, allocdb-sim): every --option
# printed by `PROG --help` and by `PROG COMMAND --help` for each command listed under
# "Commands:" appears in the program's page (as `Fl -option`, or -option in running text);
# allocdbd's per-key flags, the lines under "Configuration keys", must instead be keys of
# allocdb.conf(5) (".It Cm key_name"). In the other direction, every `Fl -option` of the page
# must be one the program prints (or a key flag, for allocdbd).
set -u
top_builddir=${top_builddir:-.}
top_srcdir=${top_srcdir:-$(dirname "$0")/..}
mandir=$top_srcdir/man

if ! command -v mandoc >/dev/null 2>&1; then
    echo "1..0 # SKIP mandoc not installed"
    exit 0
fi

. "$top_srcdir/tests/tap.sh"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/allocdb-man.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT

pages=$(ls "$mandir"/*.[1-9] 2>/dev/null)
programs="allocdbd allocdb allocdb-bench allocdb-inspect allocdb-sim"
npages=$(printf '%s\n' "$pages" | grep -c .)
echo "1..$((npages + $(echo $programs | wc -w)))"

# The scratch manual: our pages only, indexed (without mandoc.db, mandoc falls back to a file
# search and warns that the database is outdated).
ours=""
for p in $pages; do
    base=${p##*/}
    sec=${base##*.}
    mkdir -p "$tmp/man/man$sec"
    cp "$p" "$tmp/man/man$sec/$base"
    ours="$ours ${base%.*}($sec)"
done
if command -v makewhatis >/dev/null 2>&1; then
    makewhatis "$tmp/man" >/dev/null 2>&1
fi

# Can this mandoc resolve an .Xr in a private tree? Two pages that refer to each other.
mkdir -p "$tmp/probe/man1"
for pair in a:b b:a; do
    this=${pair%:*} other=${pair#*:}
    printf '.Dd November 24, 2026\n.Dt ADBPROBE-%s 1\n.Os\n.Sh NAME\n.Nm adbprobe-%s\n.Nd probe\n.Sh SEE ALSO\n.Xr adbprobe-%s 1\n' \
        "$this" "$this" "$other" >"$tmp/probe/man1/adbprobe-$this.1"
done
makewhatis "$tmp/probe" >/dev/null 2>&1
if mandoc -T lint -W style -m "$tmp/probe" "$tmp/probe/man1/adbprobe-a.1" 2>/dev/null |
    grep -q "referenced manual not found"; then
    xr_by_mandoc=no
    echo "# note: this mandoc cannot search a private manpath; references to our pages are checked by name"
else
    xr_by_mandoc=yes
fi

is_ours() { # is_ours NAME SEC
    case " $ours " in *" $1($2) "*) return 0 ;; esac
    return 1
}

# Reads mandoc's messages on stdin; prints the ones that fail the page, and the tolerated ones
# prefixed with "NOTE: ".
# $1: "own" to drop unresolved references to our pages (the default-level run).
judge() {
    while IFS= read -r line; do
        case $line in
        *"outdated mandoc.db lacks"*) continue ;; # no mandoc.db in a system manpath: noise
        *"referenced manual not found: Xr "*)
            ref=${line##*Xr }
            name=${ref%% *}
            rest=${ref#* }
            sec=${rest%% *}
            if is_ours "$name" "$sec"; then
                [ "$1" = own ] || [ "$xr_by_mandoc" = no ] && continue
                printf '%s\n' "$line"
                continue
            fi
            case $name in
            allocdb* | liballocdb*) printf '%s (not one of our pages:%s)\n' "$line" "$ours" ;;
            *) printf 'NOTE: %s (a system page not installed here; tolerated)\n' "$line" ;;
            esac
            ;;
        *) printf '%s\n' "$line" ;;
        esac
    done
}

for p in $pages; do
    base=${p##*/}
    name=${base%.*}
    # Both runs report most messages; each is shown once.
    { mandoc -T lint -W style -m "$tmp/man" "$p" 2>&1 | judge checked
      mandoc -T lint "$p" 2>&1 | judge own; } | awk '!seen[$0]++' >"$tmp/msgs"
    sed -n 's/^NOTE: //p' "$tmp/msgs" | sed 's/^/# note: /'
    why=$(grep -v '^NOTE: ' "$tmp/msgs")
    for x in $(grep -o -E 'Xr +(lib)?allocdb[^ ]* +[1-9]' "$p" | awk '{ print $2 "(" $3 ")" }' | sort -u); do
        case " $ours " in *" $x "*) ;; *) why="${why:+$why
}.Xr ${x%(*} names no page in man/" ;; esac
    done
    plain=$(grep -n -E '(^|[^A-Za-z0-9.-])(lib)?allocdb[a-z.-]*\([1-9]\)' "$p")
    [ -n "$plain" ] && why="${why:+$why
}plain-text references (use .Xr so they are checked):
$plain"
    seealso=$(awk '$1 == ".Sh" { on = ($2 == "SEE" && $3 == "ALSO"); next }
                   on && $1 == ".Xr" { print $2 "(" $3 ")" }' "$p")
    for o in $ours; do
        [ "$o" = "$name(${base##*.})" ] && continue
        case " $(printf '%s\n' "$seealso" | tr '\n' ' ')" in *" $o "*) ;; *)
            why="${why:+$why
}SEE ALSO lacks .Xr ${o%(*} $(o=${o#*\(}; echo "${o%)}")" ;;
        esac
    done
    if [ -z "$why" ]; then ok "$base: mandoc -T lint clean, cross-references resolve"; else
        not_ok "$base: mandoc -T lint clean, cross-references resolve" "$why"; fi
done

# ---- options ----------------------------------------------------------------------------

# documented PAGE OPTION: the page shows --OPTION, as `Fl -OPTION` (also `Fl a | -OPTION`) or
# in running text.
documented() {
    grep -q -E -- "(^|[[:space:]])(-|--|\\\\-\\\\-)$2([^a-z0-9-]|\$)" "$1"
}

# The long options a page's Fl macros name, one per line ("Fl -a | -b" names both).
page_flags() {
    grep -o -E 'Fl( +(-[a-z][a-z0-9-]*|\|))+' "$1" | tr ' |' '\n\n' |
        sed -n 's/^-\([a-z][a-z0-9-]*\)$/\1/p' | sort -u
}

for prog in $programs; do
    exe=$top_builddir/$prog
    case $prog in allocdbd) page=$mandir/$prog.8 ;; *) page=$mandir/$prog.1 ;; esac
    why=""
    if ! "$exe" --help >"$tmp/help" 2>&1; then
        not_ok "$prog: --help options documented" "$exe --help failed: $(cat "$tmp/help")"
        continue
    fi
    : >"$tmp/all"
    cat "$tmp/help" >>"$tmp/all"
    commands=$(awk '/^Commands:/ { on = 1; next } on && /^$/ { exit }
                    on && /^  [a-z]/ { print $1 }' "$tmp/help")
    for c in $commands; do
        if ! "$exe" "$c" --help >"$tmp/sub" 2>&1; then
            why="${why:+$why
}$prog $c --help failed: $(head -3 "$tmp/sub")"
        fi
        cat "$tmp/sub" >>"$tmp/all"
    done
    grep -o -E -- '--[a-z][a-z0-9-]*' "$tmp/all" | sed 's/^--//' | sort -u >"$tmp/options"
    : >"$tmp/keys"
    if [ "$prog" = allocdbd ]; then
        awk '/^Configuration keys/ { on = 1; next } on && /^$/ { exit }
             on && /^  --/ { sub(/^  --/, ""); print $1 }' "$tmp/help" | sort -u >"$tmp/keys"
        [ -s "$tmp/keys" ] || why="${why:+$why
}no 'Configuration keys' lines in allocdbd --help"
    fi
    missing=""
    while read -r opt; do
        if grep -q -x -F -e "$opt" "$tmp/keys"; then
            key=$(printf '%s' "$opt" | tr '-' '_')
            grep -q -E "^\\.It Cm $key( |\$)" "$mandir/allocdb.conf.5" ||
                missing="$missing --$opt (key $key not in allocdb.conf.5)"
        elif ! documented "$page" "$opt"; then
            missing="$missing --$opt"
        fi
    done <"$tmp/options"
    [ -n "$missing" ] && why="${why:+$why
}printed by --help but not in ${page##*/}:$missing"
    stale=""
    for f in $(page_flags "$page"); do
        grep -q -x -F -e "$f" "$tmp/options" || stale="$stale --$f"
    done
    [ -n "$stale" ] && why="${why:+$why
}in ${page##*/} but not printed by any --help:$stale"
    if [ -z "$why" ]; then ok "$prog: --help options documented ($(wc -l <"$tmp/options") options)"; else
        not_ok "$prog: --help options documented" "$why"; fi
done

[ $fails -eq 0 ]
