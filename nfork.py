import os, socket, sys, time
ss = [socket.create_connection(("127.0.0.1", 47124)) for i in range(int(sys.argv[1]))]
for s in ss: s.sendall(b"GET / HTTP/1.0\r\n\r\n")   # client speaks first; server never answers yet
t = time.monotonic()
pid = os.fork()
if pid == 0: os._exit(0)
os.waitpid(pid, 0)
print("fork with %d undecided connections: %.2f s" % (len(ss), time.monotonic() - t))
t = time.monotonic()
os.system("true")
print("system(): %.2f s" % (time.monotonic() - t))
