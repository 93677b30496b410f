#!/usr/bin/env python3
"""Kernel run time of each netta program (bpf_stats) per connection.

    kernel-costs.py [--workload echo|ab] [--json FILE] N NETTA [OUT]

Runs `NETTA events` with kernel.bpf_stats_enabled=1 (restored afterwards) and
NETTA_BPF_STATS=1 (netta prints each program's run count and run time at exit)
around a loopback workload of N connections:
  echo: N one-request TCP connections (100 B up, 300 B down), then N unconnected
        UDP datagrams (the UDP programs' runs are per datagram), then N/10
        connects to a closed port (a RST each);
  ab:   `ab -n N -c 8` against nginx (2 workers, keep-alive off) on 127.0.0.1, as
        `cargo xtask bench` runs it.
The programs see the whole machine: runs per connection show whether other
traffic was counted too. Costs are per connection of the workload (N), whatever
the program's own runs.
"""
import argparse, json, os, re, shutil, socket, subprocess, tempfile, threading, time

ap = argparse.ArgumentParser()
ap.add_argument('--workload', choices=['echo', 'ab'], default='echo')
ap.add_argument('--json')
ap.add_argument('n', type=int)
ap.add_argument('netta')
ap.add_argument('out', nargs='?')
a = ap.parse_args()
N = a.n


def echo():
    s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(512); port = s.getsockname()[1]

    def serve():
        for _ in range(N):
            c, _ = s.accept(); c.recv(100); c.send(b'y' * 300); c.close()
    t = threading.Thread(target=serve); t.start()
    for _ in range(N):
        c = socket.create_connection(('127.0.0.1', port)); c.send(b'x' * 100); c.recv(1000); c.close()
    t.join()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(N):
        u.sendto(b'z' * 32, ('127.0.0.1', port))
    # Connects to a port nobody listens on: each is answered by a RST (the reset hooks).
    s.close()
    refused = N // 10
    for _ in range(refused):
        try:
            socket.create_connection(('127.0.0.1', port)).close()
        except ConnectionRefusedError:
            pass
    return f'{N} TCP connections (100 B up, 300 B down) + {N} UDP datagrams + {refused} refused connects'


class Nginx:
    PORT = 18089

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix='netta-costs-')
        d = self.dir
        conf = os.path.join(d, 'nginx.conf')
        open(conf, 'w').write(
            f'worker_processes 2;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\ndaemon off;\n'
            'events { worker_connections 4096; }\n'
            'http {\n  access_log off;\n  keepalive_timeout 0;\n'
            f'  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;\n'
            f'  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n'
            f'  server {{ listen 127.0.0.1:{self.PORT} backlog=4096; location / {{ return 200 "ok\\n"; }} }}\n}}\n')
        self.p = subprocess.Popen(['nginx', '-c', conf, '-p', d], stdout=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(('127.0.0.1', self.PORT)).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f'nginx did not start (see {d}/error.log)')

    def __exit__(self, *_):
        self.p.terminate(); self.p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def ab():
    r = subprocess.run(['ab', '-q', '-n', str(N), '-c', '8', f'http://127.0.0.1:{Nginx.PORT}/'],
                       capture_output=True, text=True, check=True)
    failed = re.search(r'Failed requests:\s+(\d+)', r.stdout)
    return f'`ab -n {N} -c 8` against nginx on 127.0.0.1 ({failed.group(1) if failed else "?"} failed)'


old = open('/proc/sys/kernel/bpf_stats_enabled').read().strip()
open('/proc/sys/kernel/bpf_stats_enabled', 'w').write('1')
nginx = Nginx().__enter__() if a.workload == 'ab' else None
try:
    env = dict(os.environ, NETTA_BPF_STATS='1')
    p = subprocess.Popen([a.netta, '--standalone', 'events'], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    head = []
    for l in p.stderr:
        head.append(l.strip())
        if 'netta: ready' in l or 'netta: standalone' in l:
            break
    t0 = time.time()
    what = ab() if nginx else echo()
    el = time.time() - t0
    time.sleep(0.3)
    p.send_signal(2)
    rest = p.stderr.read(); p.wait()
    programs = []
    for m in re.finditer(r'bpf-stats (\S+) runs (\d+) run_time_ns (\d+)', rest):
        name, runs, ns = m.group(1), int(m.group(2)), int(m.group(3))
        if runs:
            programs.append({'program': name, 'runs': runs, 'run_time_ns': ns,
                             'ns_per_connection': ns / N, 'runs_per_connection': runs / N})
    base = next((q['ns_per_connection'] for q in programs if q['program'] == 'inet_sock_set_state'), None)
    for q in programs:
        q['relative_to_set_state'] = q['ns_per_connection'] / base if base else None
    lines = [f'kernel {os.uname().release}: {what} in {el:.1f} s'] + [h for h in head if 'degraded' in h]
    for q in programs:
        rel = q['relative_to_set_state']
        lines.append(f"{q['program']:26} runs {q['runs']:8} ({q['runs_per_connection']:5.2f}/conn)  "
                     f"{q['ns_per_connection']:8.1f} ns per connection  {q['run_time_ns'] / q['runs']:7.1f} ns per run"
                     + (f'  {rel:5.2f}x set_state' if rel is not None else ''))
    tot = sum(q['run_time_ns'] for q in programs)
    lines.append(f'all programs: {tot / N:.1f} ns per connection')
    txt = '\n'.join(lines)
    print(txt)
    if a.out:
        open(a.out, 'w').write(txt + '\n')
    if a.json:
        json.dump({'kernel': os.uname().release, 'workload': what, 'connections': N, 'seconds': el,
                   'programs': programs}, open(a.json, 'w'), indent=1)
finally:
    if nginx:
        nginx.__exit__()
    open('/proc/sys/kernel/bpf_stats_enabled', 'w').write(old)
