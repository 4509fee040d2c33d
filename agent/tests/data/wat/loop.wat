;; An endless loop: stopped by fuel, or by the wall clock when fuel is ample.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $forever (br $forever))))
