import { runRooms } from './workloads/rooms.ts';
const [w, ratesArg] = process.argv.slice(2);
const many = w === 'many';
const rates = (ratesArg ?? '500').split(',').map(Number);
const r = await runRooms(
  'threshold',
  {
    rooms: many ? 10000 : 20,
    perRoom: many ? 1 : 50,
    rates,
    warmupMs: 1000,
    measureMs: 4000,
    drainMs: 1000,
  },
  () => {},
);
for (const s of r.steps) {
  const server = s.processes.filter((p) => !/subscribers|publisher/.test(p.name));
  const nodes = server.filter((p) => p.name.startsWith('threshold')).reduce((a, p) => a + p.cpu, 0);
  const redis = server.find((p) => p.name === 'redis-server')?.cpu ?? 0;
  console.log(
    `${w} ${s.rate}/s: delivered ${s.delivered}/s p50 ${s.latency.p50} p99 ${s.latency.p99}; nodes ${((nodes * 1e6) / s.rate).toFixed(0)} µs/msg (${((nodes * 1e6) / Math.max(1, s.delivered)).toFixed(1)} µs/delivery), redis ${((redis * 1e6) / s.rate).toFixed(0)} µs/msg, busy ${s.machineBusyCores}`,
  );
}
process.exit(0);
