;; Prints (raw, little-endian) to stdout: realtime and monotonic clocks at start (2 x u64),
;; 16 bytes of random_get, then both clocks after a 5 s sleep through poll_oneoff (2 x u64):
;; 48 bytes in all.
(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func $check (param $err i32)
    (if (local.get $err) (then (call $proc_exit (i32.add (i32.const 100) (local.get $err))))))
  (func (export "_start")
    (call $check (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 96)))
    (call $check (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 104)))
    (call $check (call $random_get (i32.const 112) (i32.const 16)))
    ;; One relative monotonic clock subscription at 200: userdata 7, tag 0 (clock),
    ;; id 1 (monotonic), timeout 5 s, precision 0, flags 0.
    (i64.store (i32.const 200) (i64.const 7))
    (i32.store8 (i32.const 208) (i32.const 0))
    (i32.store (i32.const 216) (i32.const 1))
    (i64.store (i32.const 224) (i64.const 5000000000))
    (i64.store (i32.const 232) (i64.const 0))
    (i32.store16 (i32.const 240) (i32.const 0))
    (call $check (call $poll_oneoff (i32.const 200) (i32.const 304) (i32.const 1) (i32.const 340)))
    (call $check (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 128)))
    (call $check (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 136)))
    (i32.store (i32.const 400) (i32.const 96))
    (i32.store (i32.const 404) (i32.const 48))
    (call $check (call $fd_write (i32.const 1) (i32.const 400) (i32.const 1) (i32.const 408)))))
