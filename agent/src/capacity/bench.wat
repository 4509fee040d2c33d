;; The capacity benchmark module (agent `capacity::bench`); bench.wasm is this file converted
;; by the `wat` crate. The unit test `the_committed_wasm_is_bench_wat_converted` checks that.
(module
  (func (export "spin") (param $x i64) (result i64)
    (loop $again
      (local.set $x
        (i64.add
          (i64.mul (local.get $x) (i64.const 6364136223846793005))
          (i64.const 1442695040888963407)))
      (br $again))
    (local.get $x)))
