(module (@dylink.0 (mem-info (memory 64 2)) (needed "libgood.so" "libmissing.so")) (import "env" "memory" (memory 1)))
