;; A compute loop of 50,000,000 iterations, then a clean return (for measurements).
(module
  (memory (export "memory") 1)
  (func (export "_start") (local $i i32) (local $acc i32)
    (loop $next
      (local.set $acc (i32.add (local.get $acc) (i32.mul (local.get $i) (i32.const 3))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $next (i32.lt_u (local.get $i) (i32.const 50000000))))
    (i32.store (i32.const 0) (local.get $acc))))
