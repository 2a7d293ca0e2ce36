/**
 * The panel's three tables: workers, the queue (with why each job waits) and
 * the recent jobs (with a Cancel button while a job can still be cancelled).
 * Rows are keyed by id, so a refresh updates them in place.
 */
import React, { useState } from 'react';

import {
  elapsed,
  formatBytes,
  formatDuration,
  hostPort,
  since
} from './format';
import { IJob, IQueue, IWorker, TERMINAL_STATES } from './tokens';

/** One row per live worker: address, status, threads, memory, GPUs, jobs. */
export function WorkersTable(props: {
  workers: readonly IWorker[];
}): React.ReactElement {
  if (props.workers.length === 0) {
    return <p className="jp-StrataLab-empty">No workers.</p>;
  }
  return (
    <table className="jp-StrataLab-table">
      <thead>
        <tr>
          <th>worker</th>
          <th>status</th>
          <th className="jp-StrataLab-wide" title="threads in use / threads">
            threads
          </th>
          <th className="jp-StrataLab-wide">memory</th>
          <th className="jp-StrataLab-wide" title="GPUs in use / GPUs">
            GPUs
          </th>
          <th>jobs</th>
        </tr>
      </thead>
      <tbody>
        {props.workers.map(w => (
          <tr key={w.id} data-worker-id={w.id}>
            <td title={`${w.id}\n${w.address}`}>
              <span className="jp-StrataLab-mono">{hostPort(w.address)}</span>
            </td>
            <td>
              <span
                className={`jp-StrataLab-badge jp-StrataLab-worker-${w.status}`}
              >
                {w.status}
              </span>
            </td>
            <td className="jp-StrataLab-wide">
              {w.used_cpu}/{w.nthreads}
            </td>
            <td className="jp-StrataLab-wide">
              {formatBytes(w.memory_bytes)} /{' '}
              {formatBytes(w.memory_limit_bytes)}
            </td>
            <td className="jp-StrataLab-wide">
              {w.used_gpus}/{w.gpus}
            </td>
            <td title={w.running_jobs.join('\n')}>{w.running_jobs.length}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** Queue depth and counts by state, then the queued jobs and why they wait. */
export function QueueView(props: {
  queue: IQueue | null;
  now: number;
}): React.ReactElement {
  const { queue, now } = props;
  if (!queue) {
    return <p className="jp-StrataLab-empty">…</p>;
  }
  const states = Object.entries(queue.by_state).filter(([, n]) => n > 0);
  return (
    <div>
      <div className="jp-StrataLab-chips">
        <span className="jp-StrataLab-chip">depth {queue.depth}</span>
        <span className="jp-StrataLab-chip">running {queue.running}</span>
        {queue.oldest_wait_seconds !== null && (
          <span className="jp-StrataLab-chip">
            oldest wait {formatDuration(queue.oldest_wait_seconds)}
          </span>
        )}
        <span className="jp-StrataLab-chip">
          24 h: {queue.completed_24h} completed
        </span>
        <span className="jp-StrataLab-chip">{queue.failed_24h} failed</span>
        {states.map(([state, n]) => (
          <span
            key={state}
            className={`jp-StrataLab-badge jp-StrataLab-state-${state}`}
          >
            {state} {n}
          </span>
        ))}
      </div>
      {queue.jobs.length > 0 && (
        <table className="jp-StrataLab-table">
          <thead>
            <tr>
              <th>job</th>
              <th title="priority → aged priority">priority</th>
              <th className="jp-StrataLab-wide">waiting</th>
              <th>why pending</th>
            </tr>
          </thead>
          <tbody>
            {queue.jobs.slice(0, 10).map(j => (
              <tr key={j.id} data-job-id={j.id}>
                <td title={j.id}>{j.name}</td>
                <td>
                  {j.priority}
                  {j.priority_aged !== null &&
                    Math.abs(j.priority_aged - j.priority) >= 0.05 && (
                      <> → {j.priority_aged.toFixed(1)}</>
                    )}
                </td>
                <td className="jp-StrataLab-wide">{since(j.queued_at, now)}</td>
                <td className="jp-StrataLab-why">{j.why_pending ?? '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

/** The recent jobs, newest first, each with Cancel while it can be cancelled. */
export function JobsTable(props: {
  jobs: readonly IJob[];
  now: number;
  onCancel: (job: IJob) => Promise<void>;
}): React.ReactElement {
  const [cancelling, setCancelling] = useState<ReadonlySet<string>>(new Set());
  if (props.jobs.length === 0) {
    return <p className="jp-StrataLab-empty">No jobs yet.</p>;
  }
  const cancel = async (job: IJob) => {
    setCancelling(s => new Set(s).add(job.id));
    try {
      await props.onCancel(job);
    } finally {
      setCancelling(s => {
        const next = new Set(s);
        next.delete(job.id);
        return next;
      });
    }
  };
  return (
    <table className="jp-StrataLab-table">
      <thead>
        <tr>
          <th>job</th>
          <th>status</th>
          <th className="jp-StrataLab-wide">priority</th>
          <th className="jp-StrataLab-wide">worker</th>
          <th className="jp-StrataLab-wide">created</th>
          <th className="jp-StrataLab-wide">time</th>
          <th />
        </tr>
      </thead>
      <tbody>
        {props.jobs.map(j => (
          <tr key={j.id} data-job-id={j.id} data-status={j.status}>
            <td title={`${j.id}\n${j.entrypoint ?? ''}`}>
              {j.name}
              <div className="jp-StrataLab-sub jp-StrataLab-mono jp-StrataLab-wide">
                {j.id}
              </div>
            </td>
            <td title={j.error ?? j.why_pending ?? ''}>
              <span
                className={`jp-StrataLab-badge jp-StrataLab-state-${j.status}`}
              >
                {j.status}
              </span>
              {j.exit_code !== null && j.exit_code !== 0 && (
                <div className="jp-StrataLab-sub">exit {j.exit_code}</div>
              )}
            </td>
            <td className="jp-StrataLab-wide">{j.priority}</td>
            <td className="jp-StrataLab-wide jp-StrataLab-mono">
              {j.worker ? hostPort(j.worker) : '—'}
            </td>
            <td className="jp-StrataLab-wide">
              {since(j.created_at, props.now)} ago
            </td>
            <td className="jp-StrataLab-wide">{elapsed(j, props.now)}</td>
            <td>
              {!TERMINAL_STATES.has(j.status) && (
                <button
                  className="jp-StrataLab-cancel"
                  disabled={cancelling.has(j.id)}
                  onClick={() => void cancel(j)}
                >
                  Cancel
                </button>
              )}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
