(module
  (@dylink.0 (mem-info (memory 0 0)))
  (import "env" "memory" (memory 1))
  (func (export "deeper") (result i32) i32.const 12))
