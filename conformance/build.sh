#!/usr/bin/env bash
# Rebuild every conformance program from source with clang-19 / wasm-ld-19.
#
# Each case's case.txt lists its builds, in order, as lines:
#   build: lib  OUT.so   SRC.c... [-- LINK ARGS]   side module (-fPIC -shared)
#   build: pie  OUT.wasm SRC.c... [-- LINK ARGS]   PIE main (-pie, imports memory and table)
#   build: exe  OUT.wasm SRC.c... [-- LINK ARGS]   non-PIE main (Emscripten style: -fPIC objects,
#                                                  fixed addresses, exports memory and table)
# LINK ARGS may name built libraries (out/libx.so) to record them as NEEDED.
# Optional case-wide lines: `cflags: …` (extra compiler flags, such as -matomics) and
# `target: wasm64` (memory64 programs).
# Outputs go to the case's out/ directory and are committed; CI rebuilds and compares.
set -euo pipefail
cd "$(dirname "$0")"
CC=${CC:-clang-19}
LD=${LD:-wasm-ld-19}
COMMON="-O2 -nostdlib -ffreestanding -fvisibility=default -Wall -Werror -Iinclude"
only=${1:-}
for case_dir in cases/*/; do
    case_dir=${case_dir%/}
    [ -n "$only" ] && [ "$(basename "$case_dir")" != "$only" ] && continue
    grep -q '^build:' "$case_dir/case.txt" || continue
    rm -rf "$case_dir/out"
    mkdir -p "$case_dir/out"
    extra=$(sed -n 's/^cflags: *//p' "$case_dir/case.txt")
    bits=$(sed -n "s/^target: *//p" "$case_dir/case.txt")
    arch="--target=wasm32"
    ldarch=""
    if [ "$bits" = wasm64 ]; then arch="--target=wasm64"; ldarch="-mwasm64"; fi
    grep '^build:' "$case_dir/case.txt" | while read -r _ kind target rest; do
        srcs=${rest%%--*}
        link=""
        [[ "$rest" == *--* ]] && link=${rest#*--}
        objs=""
        for src in $srcs; do
            obj="$case_dir/out/$(basename "${src%.c}").o"
            $CC $arch $COMMON $extra -fPIC -c "$case_dir/$src" -o "$obj"
            objs="$objs $obj"
        done
        libs=""
        for a in $link; do
            case "$a" in
                out/*) libs="$libs $case_dir/$a" ;;
                *) libs="$libs $a" ;;
            esac
        done
        mkdir -p "$(dirname "$case_dir/out/$target")"
        case "$kind" in
            lib) $LD $ldarch --experimental-pic -shared --unresolved-symbols=import-dynamic --export-if-defined=__dso_handle \
                    -o "$case_dir/out/$target" $objs $libs ;;
            pie) $LD $ldarch --experimental-pic -pie --no-entry --export-dynamic --import-memory --import-table \
                    --unresolved-symbols=import-dynamic --export-if-defined=__wasm_call_ctors \
                    -o "$case_dir/out/$target" $objs $libs ;;
            exe) $LD $ldarch --experimental-pic --no-entry --export-all --export-table --unresolved-symbols=import-dynamic \
                    -o "$case_dir/out/$target" $objs $libs ;;
            *) echo "$case_dir: unknown build kind $kind" >&2; exit 1 ;;
        esac
    done
    rm -f "$case_dir"/out/*.o
done
