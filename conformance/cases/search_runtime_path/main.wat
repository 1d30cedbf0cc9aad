(module
  (@dylink.0 (mem-info (memory 0 0)) (needed "plugins/libtop.so"))
  (import "env" "memory" (memory 1))
  (import "env" "top" (func $top (result i32)))
  (func (export "run") (result i32) call $top))
