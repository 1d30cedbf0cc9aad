#!/usr/bin/env bash
# Rebuild every conformance program from source with clang-19 / wasm-ld-19.
#
# Each case's case.txt lists its builds, in order, as lines:
#   build: lib  OUT.so   SRC.c... [-- LINK ARGS]   side module (-fPIC -shared)
#   build: pie  OUT.wasm SRC.c... [-- LINK ARGS]   PIE main (-pie, imports memory and table)
#   build: exe  OUT.wasm SRC.c... [-- LINK ARGS]   non-PIE main (Emscripten style: -fPIC objects,
#                                                  fixed addresses, exports memory and table)
# LINK ARGS may name built libraries (out/libx.so) to record them as NEEDED.
# Outputs go to the case's out/ directory and are committed; CI rebuilds and compares.
set -euo pipefail
cd "$(dirname "$0")"
CC=${CC:-clang-19}
LD=${LD:-wasm-ld-19}
COMMON="--target=wasm32 -O2 -nostdlib -ffreestanding -fvisibility=default -Wall -Werror -Iinclude"
only=${1:-}
for case_dir in cases/*/; do
    case_dir=${case_dir%/}
    [ -n "$only" ] && [ "$(basename "$case_dir")" != "$only" ] && continue
    grep -q '^build:' "$case_dir/case.txt" || continue
    rm -rf "$case_dir/out"
    mkdir -p "$case_dir/out"
    grep '^build:' "$case_dir/case.txt" | while read -r _ kind target rest; do
        srcs=${rest%%--*}
        link=""
        [[ "$rest" == *--* ]] && link=${rest#*--}
        objs=""
        for src in $srcs; do
            obj="$case_dir/out/$(basename "${src%.c}").o"
            $CC $COMMON -fPIC -c "$case_dir/$src" -o "$obj"
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
            lib) $LD --experimental-pic -shared --unresolved-symbols=import-dynamic --export-if-defined=__dso_handle \
                    -o "$case_dir/out/$target" $objs $libs ;;
            pie) $LD --experimental-pic -pie --no-entry --export-dynamic --import-memory --import-table \
                    --unresolved-symbols=import-dynamic --export-if-defined=__wasm_call_ctors \
                    -o "$case_dir/out/$target" $objs $libs ;;
            exe) $LD --experimental-pic --no-entry --export-all --export-table --unresolved-symbols=import-dynamic \
                    -o "$case_dir/out/$target" $objs $libs ;;
            *) echo "$case_dir: unknown build kind $kind" >&2; exit 1 ;;
        esac
    done
    rm -f "$case_dir"/out/*.o
done
