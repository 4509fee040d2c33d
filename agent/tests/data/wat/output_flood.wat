;; Writes 64 KiB blocks to /iexec_out/flood.bin forever. Exits 100+errno if a call fails.
(module
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 2)
  (data (i32.const 0) "flood.bin")
  (func (export "_start") (local $err i32)
    ;; iovec at 16: the second page (64 KiB).
    (i32.store (i32.const 16) (i32.const 65536))
    (i32.store (i32.const 20) (i32.const 65536))
    ;; fd 4 is /iexec_out; oflags CREAT; rights FD_WRITE.
    (local.set $err (call $path_open (i32.const 4) (i32.const 0) (i32.const 0) (i32.const 9)
      (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 36)))
    (if (local.get $err) (then (call $proc_exit (i32.add (i32.const 100) (local.get $err)))))
    (loop $write
      (local.set $err (call $fd_write (i32.load (i32.const 36)) (i32.const 16) (i32.const 1) (i32.const 32)))
      (if (local.get $err) (then (call $proc_exit (i32.add (i32.const 100) (local.get $err)))))
      (br $write))))
