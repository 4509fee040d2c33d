;; A trivial iExec app for the pipeline benchmark: reads the whole dataset
;; (/iexec_in/dataset.bin) and writes its size to /iexec_out/result.txt, with computed.json
;; pointing at it. Its own compute is a few fd_read calls, so the end-to-end time of a task is
;; almost all the agent's overhead. It relies on the agent's sandbox layout: fd 3 is /iexec_in,
;; fd 4 is /iexec_out (the order the preopens are pushed in).
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 32)
  ;; 0: iovec, 8: nread/nwritten, 12: opened fd, 16..36: decimal digits
  (data (i32.const 100) "dataset.bin")
  (data (i32.const 120) "result.txt")
  (data (i32.const 140) "computed.json")
  (data (i32.const 200) "{\"deterministic-output-path\":\"/iexec_out/result.txt\"}\n")
  (global $buf i32 (i32.const 65536))

  ;; Opens path (ptr, len) under dir; exits 1 on failure; returns the fd.
  (func $open (param $dir i32) (param $ptr i32) (param $len i32) (param $oflags i32) (param $rights i64) (result i32)
    (if (call $path_open (local.get $dir) (i32.const 0) (local.get $ptr) (local.get $len)
          (local.get $oflags) (local.get $rights) (i64.const 0) (i32.const 0) (i32.const 12))
      (then (call $proc_exit (i32.const 1))))
    (i32.load (i32.const 12)))

  ;; Writes (ptr, len) to a new file name (ptr, len) in /iexec_out.
  (func $write_file (param $name i32) (param $name_len i32) (param $ptr i32) (param $len i32)
    (local $fd i32)
    ;; O_CREAT | O_TRUNC, rights FD_WRITE
    (local.set $fd (call $open (i32.const 4) (local.get $name) (local.get $name_len) (i32.const 9) (i64.const 64)))
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (if (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))
      (then (call $proc_exit (i32.const 1))))
    (drop (call $fd_close (local.get $fd))))

  (func (export "_start")
    (local $fd i32) (local $total i32) (local $n i32) (local $p i32)
    ;; rights FD_READ
    (local.set $fd (call $open (i32.const 3) (i32.const 100) (i32.const 11) (i32.const 0) (i64.const 2)))
    (loop $more
      (i32.store (i32.const 0) (global.get $buf))
      (i32.store (i32.const 4) (i32.const 1048576))
      (if (call $fd_read (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))
        (then (call $proc_exit (i32.const 1))))
      (local.set $n (i32.load (i32.const 8)))
      (local.set $total (i32.add (local.get $total) (local.get $n)))
      (br_if $more (local.get $n)))
    (drop (call $fd_close (local.get $fd)))
    ;; the size in decimal, written backwards from 35, then a newline at 35
    (i32.store8 (i32.const 35) (i32.const 10))
    (local.set $p (i32.const 35))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (local.get $total) (i32.const 10))))
      (local.set $total (i32.div_u (local.get $total) (i32.const 10)))
      (br_if $digit (local.get $total)))
    (call $write_file (i32.const 120) (i32.const 10) (local.get $p) (i32.sub (i32.const 36) (local.get $p)))
    (call $write_file (i32.const 140) (i32.const 13) (i32.const 200) (i32.const 54))))
