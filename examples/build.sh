#!/usr/bin/env bash
# Rebuild the examples with clang-19 and Debian's wasi-libc
# (apt-get install clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32 curl; the zstd and
# SQLite sources come from crates.io, through cargo and curl).
#
# A non-PIE main carries libc and exports what its side modules use of it (named below),
# its function table and its stack pointer; side modules (-fPIC -shared) import those. Each
# also exports malloc and free, so that dylink starts libc's allocator before it places the
# libraries at the end of memory: this wasi-libc's allocator takes, at its first call, all
# memory up to the memory's size as its heap, libraries included.
# It is built as a reactor exporting __main_void: in a command (_start), wasm-ld wraps every
# other export so that it runs the constructors again, which libraries calling into the
# main's libc must not do. `dylink run` calls _initialize, then __main_void, then exit with
# its result (exit flushes stdio and runs atexit handlers, as a command's _start would).
# (wasi-libc 2022 with --export-all cannot open preopened directories: export by name.) Such a main has no
# NEEDED list: `dylink run --preload` names its libraries.
set -euo pipefail
cd "$(dirname "$0")"
CC=${CC:-clang-19}
LD=${LD:-wasm-ld-19}
MAIN_LINK="-Wl,--experimental-pic,--export-table,--growable-table,--export=__stack_pointer,--export=__main_void,--export=exit,--unresolved-symbols=import-dynamic"
side() { # OUT SRC
    $CC --target=wasm32-wasi -O2 -fPIC -fvisibility=default -c "$2" -o "$1.o"
    $LD --experimental-pic -shared --unresolved-symbols=import-dynamic -o "$1" "$1.o" 2>&1 | grep -v "not yet stable" || true
    rm -f "$1.o"
}
main() { # OUT SRC [LIBC SYMBOLS THE SIDE MODULES NEED]
    local out=$1 src=$2
    shift 2
    local keep=""
    for s in "$@"; do keep="$keep,--export=$s"; done
    # shellcheck disable=SC2086
    $CC --target=wasm32-wasi -O2 -fPIC -mexec-model=reactor ${MAIN_CFLAGS:-} "$src" -o "$out" "$MAIN_LINK$keep" 2>&1 | grep -v "not yet stable" || true
}
main hello/main.wasm hello/main.c snprintf malloc free
side hello/libgreet.so hello/greet.c
main plugins/host.wasm plugins/host.c malloc free strcpy
side plugins/plugins/libdouble.so plugins/double.c
side plugins/plugins/libsquare.so plugins/square.c

# A real library: zstd, from the sources of the zstd-sys crate Cargo.lock pins (fetched by
# cargo), compression and decompression, no threads, no assembly.
zstd_version=$(sed -n '/^name = "zstd-sys"$/{n;s/^version = "\(.*\)"$/\1/p;}' ../Cargo.lock)
cargo fetch -q --manifest-path ../Cargo.toml
ZSTD=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"zstd-sys-$zstd_version"/zstd/lib | head -1)
ZSTD_FLAGS="-DZSTD_DISABLE_ASM -DNDEBUG -DZSTD_LEGACY_SUPPORT=0 -I$ZSTD -I$ZSTD/common"
zstd_objs=""
for src in "$ZSTD"/common/*.c "$ZSTD"/compress/*.c "$ZSTD"/decompress/*.c; do
    obj=zstd/$(basename "${src%.c}").o
    $CC --target=wasm32-wasi -O2 -fPIC -fvisibility=default $ZSTD_FLAGS -c "$src" -o "$obj"
    zstd_objs="$zstd_objs $obj"
done
# shellcheck disable=SC2086
$LD --experimental-pic -shared --unresolved-symbols=import-dynamic -o zstd/libzstd.so $zstd_objs 2>&1 | grep -v "not yet stable" || true
rm -f $zstd_objs
# The main exports what libzstd.so takes from libc (malloc and free among it).
MAIN_CFLAGS="-I$ZSTD" main zstd/main.wasm zstd/main.c malloc free calloc memcpy memmove memset
main zstd/cycle.wasm zstd/cycle.c malloc free calloc memcpy memmove memset

# SQLite: the amalgamation and wasm32-wasi VFS of the libsqlite3-sys crate, fetched from
# crates.io once (kept under target/) and checked against its hash.
SQLITE_CRATE=libsqlite3-sys-0.30.1
SQLITE_SHA256=2e99fb7a497b1e3339bc746195567ed8d3e24945ecd636e3619d20b9de9e9149
sqlite_dir=../target/example-sources
if [ ! -f "$sqlite_dir/$SQLITE_CRATE/sqlite3/sqlite3.c" ]; then
    mkdir -p "$sqlite_dir"
    curl -sSfL -o "$sqlite_dir/$SQLITE_CRATE.crate" "https://static.crates.io/crates/libsqlite3-sys/$SQLITE_CRATE.crate"
    echo "$SQLITE_SHA256  $sqlite_dir/$SQLITE_CRATE.crate" | sha256sum -c --quiet
    tar xzf "$sqlite_dir/$SQLITE_CRATE.crate" -C "$sqlite_dir" "$SQLITE_CRATE/sqlite3"
fi
SQLITE=$sqlite_dir/$SQLITE_CRATE/sqlite3
SQLITE_FLAGS="-DSQLITE_THREADSAFE=0 -DSQLITE_OS_OTHER=1 -DSQLITE_OMIT_LOAD_EXTENSION -DLONGDOUBLE_TYPE=double -DSQLITE_TEMP_STORE=3 -DNDEBUG -I$SQLITE"
$CC --target=wasm32-wasi -O2 -fPIC -fvisibility=default $SQLITE_FLAGS -c "$SQLITE/sqlite3.c" -o sqlite/sqlite3.o
$CC --target=wasm32-wasi -O2 -fPIC -fvisibility=default $SQLITE_FLAGS -c "$SQLITE/wasm32-wasi-vfs.c" -o sqlite/vfs.o
$LD --experimental-pic -shared --unresolved-symbols=import-dynamic -o sqlite/libsqlite3.so sqlite/sqlite3.o sqlite/vfs.o 2>&1 | grep -v "not yet stable" || true
rm -f sqlite/sqlite3.o sqlite/vfs.o
# What libsqlite3.so takes from libc and compiler-rt (its long doubles), errno among it.
# (calloc for libzstd.so, which libzsql.so below brings in at run time.)
MAIN_CFLAGS="-I$SQLITE" main sqlite/sqlite.wasm sqlite/main.c malloc free realloc calloc memchr memcmp memcpy \
    memmove memset strcmp strcspn strlen strncmp strrchr strspn localtime time sleep usleep errno access open \
    close read write lseek fstat fsync unlink __extenddftf2 __getf2 __gttf2 __lttf2 __multf3 __trunctfdf2
# libzsql.so: SQL functions over zstd, needing libsqlite3.so and libzstd.so (named on the
# link line, so recorded as NEEDED).
$CC --target=wasm32-wasi -O2 -fPIC -fvisibility=default -I"$SQLITE" -I"$ZSTD" -c sqlite/zsql.c -o sqlite/zsql.o
$LD --experimental-pic -shared --unresolved-symbols=import-dynamic -o sqlite/libzsql.so sqlite/zsql.o \
    sqlite/libsqlite3.so zstd/libzstd.so 2>&1 | grep -v "not yet stable" || true
rm -f sqlite/zsql.o

# A threaded program (wasi-threads) without a libc: Debian's wasi-libc has no threads.
NOLIBC="--target=wasm32 -O2 -nostdlib -ffreestanding -fPIC -fvisibility=default -matomics -mbulk-memory"
SHARED="--shared-memory --max-memory=67108864"
$CC $NOLIBC -c threads/square.c -o threads/square.o
$LD --experimental-pic -shared $SHARED -o threads/libsquare.so threads/square.o 2>&1 | grep -v "not yet stable" || true
$CC $NOLIBC -c threads/main.c -o threads/main.o
$LD --experimental-pic -pie --no-entry --export-dynamic --import-memory --export-memory --import-table $SHARED \
    --unresolved-symbols=import-dynamic -o threads/main.wasm threads/main.o 2>&1 | grep -v "not yet stable" || true
rm -f threads/*.o
