(module
  (@dylink.0 (mem-info (memory 0 0)) (needed "libfiller.so" "libaligned.so"))
  (import "env" "memory" (memory 1))
  (import "env" "base" (func $base (result i32)))
  (import "env" "sum" (func $sum (result i32)))
  (func (export "aligned") (result i32) (i32.eqz (i32.and (call $base) (i32.const 15))))
  (func (export "nonzero") (result i32) (i32.ne (call $base) (i32.const 0)))
  (func (export "run_sum") (result i32) call $sum))
