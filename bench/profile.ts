/**
 * Where a process's CPU time went, from a V8 .cpuprofile (node --cpu-prof):
 * self time per function and per package or source file.
 */
import fs from 'node:fs/promises';

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: CpuProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  totalMs: number;
  /** Self time by package (node_modules/<name>), Dispatch source file, node internals, GC or idle. */
  byPlace: { place: string; ms: number; share: number }[];
  byFunction: { fn: string; place: string; ms: number; share: number }[];
}

function placeOf(url: string, root: string): string {
  if (!url) return '(native)';
  const file = url.replace(/^file:\/\//, '');
  const inModules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file);
  if (inModules) return inModules[1]!;
  if (file.startsWith('node:')) return 'node internals';
  if (file.startsWith(root)) return file.slice(root.length + 1);
  return file;
}

export async function summariseCpuProfile(file: string, root: string, top = 25): Promise<ProfileSummary> {
  const profile = JSON.parse(await fs.readFile(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const places = new Map<string, number>();
  const functions = new Map<string, { fn: string; place: string; us: number }>();
  let total = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id)!;
    const { functionName, url, lineNumber } = node.callFrame;
    const special =
      functionName === '(idle)' || functionName === '(garbage collector)' || functionName === '(program)'
        ? functionName
        : undefined;
    const place = special ?? placeOf(url, root);
    if (functionName === '(idle)') continue;
    total += us;
    places.set(place, (places.get(place) ?? 0) + us);
    const key = `${functionName || '(anonymous)'} ${place}:${lineNumber + 1}`;
    const entry = functions.get(key) ?? { fn: `${functionName || '(anonymous)'}:${lineNumber + 1}`, place, us: 0 };
    entry.us += us;
    functions.set(key, entry);
  }
  const ms = (us: number) => Math.round(us / 100) / 10;
  const share = (us: number) => Math.round((us / total) * 1000) / 10;
  return {
    totalMs: ms(total),
    byPlace: [...places]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([place, us]) => ({ place, ms: ms(us), share: share(us) })),
    byFunction: [...functions.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((f) => ({ fn: f.fn, place: f.place, ms: ms(f.us), share: share(f.us) })),
  };
}
