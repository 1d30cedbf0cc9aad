(module
  (@custom "dylink.0" (before first) "\01\04\08\02\00\00" "\2a\03\aa\bb\cc")
  (import "env" "memory" (memory 1))
  (import "env" "__memory_base" (global $mb i32))
  (data (global.get $mb) "\07\00\00\00")
  (global (export "seven") i32 (i32.const 0)))
