(module (@dylink.0 (mem-info (memory 64 2)) (needed "libgood.so" "libcorrupt.so")) (import "env" "memory" (memory 1)))
