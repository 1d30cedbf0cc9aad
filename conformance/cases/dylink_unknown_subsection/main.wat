(module
  (@dylink.0 (mem-info (memory 0 0)) (needed "libodd.so"))
  (import "env" "memory" (memory 1))
  (import "GOT.mem" "seven" (global $seven (mut i32)))
  (func (export "run") (result i32) (i32.load (global.get $seven))))
