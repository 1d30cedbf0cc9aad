(module
  (@dylink.0 (mem-info (memory 64 2)) (needed "libgood.so"))
  (import "env" "memory" (memory 1))
  (import "env" "good_fn" (func (param i64) (result i64))))
