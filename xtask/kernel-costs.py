#!/usr/bin/env python3
"""Kernel ns per connection of each netta program (bpf_stats) over N loopback
connections with exact payloads, plus N unconnected UDP datagrams."""
import os, re, socket, subprocess, sys, threading, time
N = int(sys.argv[1]); netta = sys.argv[2]; out = sys.argv[3] if len(sys.argv) > 3 else None
old = open('/proc/sys/kernel/bpf_stats_enabled').read().strip()
open('/proc/sys/kernel/bpf_stats_enabled', 'w').write('1')
try:
    env = dict(os.environ, NETTA_BPF_STATS='1')
    p = subprocess.Popen([netta, 'events'], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    head = []
    for l in p.stderr:
        head.append(l.strip())
        if 'netta: ready' in l:
            break
    s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(512); port = s.getsockname()[1]
    def serve():
        for _ in range(N):
            a, _ = s.accept(); a.recv(100); a.send(b'y' * 300); a.close()
    t = threading.Thread(target=serve); t.start()
    t0 = time.time()
    for _ in range(N):
        c = socket.create_connection(('127.0.0.1', port)); c.send(b'x' * 100); c.recv(1000); c.close()
    t.join()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(N):
        u.sendto(b'z' * 32, ('127.0.0.1', port))
    el = time.time() - t0
    time.sleep(0.3)
    p.send_signal(2)
    rest = p.stderr.read(); p.wait()
    lines = [f'kernel {os.uname().release}: {N} TCP connections (100 B up, 300 B down) + {N} UDP datagrams in {el:.1f} s'] + [h for h in head if 'degraded' in h]
    tot = 0
    for m in re.finditer(r'bpf-stats (\S+) runs (\d+) run_time_ns (\d+)', rest):
        name, runs, ns = m.group(1), int(m.group(2)), int(m.group(3))
        if runs == 0:
            continue
        tot += ns
        lines.append(f'{name:26} runs {runs:8}  {ns/N:8.1f} ns per connection  {ns/runs:7.1f} ns per run')
    lines.append(f'all programs: {tot/N:.1f} ns per connection (the machine is shared: run-to-run noise is large)')
    txt = '\n'.join(lines)
    print(txt)
    if out:
        open(out, 'w').write(txt + '\n')
finally:
    open('/proc/sys/kernel/bpf_stats_enabled', 'w').write(old)
