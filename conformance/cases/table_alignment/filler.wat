(module
  (@dylink.0 (mem-info (memory 0 0) (table 1 0)))
  (import "env" "memory" (memory 1))
  (import "env" "__indirect_function_table" (table 1 funcref))
  (import "env" "__table_base" (global $tb i32))
  (func $f)
  (elem (global.get $tb) func $f))
