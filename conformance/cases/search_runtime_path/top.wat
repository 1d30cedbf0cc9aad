(module
  (@dylink.0 (mem-info (memory 0 0)) (needed "libdeep.so" "libdeeper.so") (runtime-path "$ORIGIN/deps" "${ORIGIN}/../shared"))
  (import "env" "memory" (memory 1))
  (import "env" "deep" (func $deep (result i32)))
  (import "env" "deeper" (func $deeper (result i32)))
  (func (export "top") (result i32) call $deep call $deeper i32.add))
