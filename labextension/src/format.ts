/**
 * Plain functions that turn API values into the short text the panel shows.
 */
import { ApiError } from './handler';
import { IJob } from './tokens';

/** `CODE: message`, plus the first field error a validation error names. */
export function describe(reason: unknown): string {
  if (!(reason instanceof ApiError)) {
    return `CLIENT_ERROR: ${String(reason)}`;
  }
  const details = reason.details as {
    errors?: { field?: string; message?: string }[];
  } | null;
  const first = details?.errors?.[0];
  const extra = first
    ? ` (${first.field ?? 'body'}: ${first.message ?? ''})`
    : '';
  return `${reason.code}: ${reason.message}${extra}`;
}

/** `tcp://10.0.0.5:4242` → `10.0.0.5:4242`. */
export function hostPort(address: string): string {
  return address.replace(/^[a-z]+:\/\//, '');
}

/** `12638255104` → `12 GiB`. */
export function formatBytes(n: number | null): string {
  if (n === null || n === undefined) {
    return '—';
  }
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v.toFixed(v >= 10 || i === 0 ? 0 : 1)} ${units[i]}`;
}

/** `3725` → `1h 2m`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) {
    return `${s}s`;
  }
  if (s < 3600) {
    return `${Math.floor(s / 60)}m ${s % 60}s`;
  }
  if (s < 86400) {
    return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  }
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

/** Time from an ISO timestamp to `now`. */
export function since(iso: string | null, now: number): string {
  return iso ? formatDuration((now - Date.parse(iso)) / 1000) : '—';
}

/** How long a job ran (or has run so far). */
export function elapsed(job: IJob, now: number): string {
  if (!job.started_at) {
    return '—';
  }
  const end = job.ended_at ? Date.parse(job.ended_at) : now;
  return formatDuration((end - Date.parse(job.started_at)) / 1000);
}
