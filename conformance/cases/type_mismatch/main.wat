(module
  (@dylink.0 (mem-info (memory 0 0)) (needed "libbar.so"))
  (import "env" "memory" (memory 1))
  (import "env" "bar" (func $bar (param i32) (result i32)))
  (func (export "run") (result i32) i32.const 1 call $bar))
