/**
 * The shapes of the StrataLab REST API that the panel reads and writes, and
 * the ids of the commands it adds. They mirror the server's pydantic models
 * (`stratalab/scheduler/schemas.py` and the views in `stratalab/scheduler`);
 * `GET /stratalab/api/v1/openapi.json` is the full document.
 */

/** Command ids of this extension. */
export namespace CommandIDs {
  /** Open (or reveal) the StrataLab panel in the main area. */
  export const open = 'stratalab:open';
  /** Fetch everything now instead of waiting for the next poll. */
  export const refresh = 'stratalab:refresh';
}

/** The 14 job states (the seed's 13 plus `RUNNING`). */
export type JobState =
  | 'PENDING'
  | 'QUEUED'
  | 'SCHEDULING'
  | 'PREPARING'
  | 'RUNNING'
  | 'TRAINING'
  | 'CHECKPOINTING'
  | 'PAUSED'
  | 'EVALUATING'
  | 'EXPORTING'
  | 'COMPLETED'
  | 'FAILED'
  | 'CANCELLED'
  | 'PREEMPTED';

/** States a job never leaves; a job in one of them cannot be cancelled. */
export const TERMINAL_STATES: ReadonlySet<string> = new Set([
  'COMPLETED',
  'FAILED',
  'CANCELLED'
]);

/** `GET /status`. */
export interface IServerStatus {
  version: string;
  uptime_s: number;
  dask_address: string | null;
  dask_dashboard: string | null;
  embedded_cluster: boolean;
  database: string;
  workers: number;
  queued_jobs: number;
  running_jobs: number;
}

/** One item of `GET /workers`. */
export interface IWorker {
  id: string;
  address: string;
  name: string | null;
  host: string | null;
  status: string;
  nthreads: number;
  memory_limit_bytes: number | null;
  gpus: number;
  cpu_percent: number | null;
  memory_bytes: number | null;
  running_jobs: string[];
  used_cpu: number;
  used_gpus: number;
}

/** A job as the server shows it (`GET /jobs`, `GET /jobs/{id}`, `GET /queue`). */
export interface IJob {
  id: string;
  name: string;
  type: string;
  status: JobState;
  priority: number;
  priority_aged: number | null;
  why_pending: string | null;
  user_id: string;
  created_at: string;
  queued_at: string | null;
  started_at: string | null;
  ended_at: string | null;
  worker: string | null;
  worker_id: string | null;
  attempt: number;
  retry_count: number;
  max_retries: number;
  exit_code: number | null;
  error: string | null;
  entrypoint: string | null;
  cpu: number;
  gpu: number;
}

/** `GET /queue`. */
export interface IQueue {
  depth: number;
  running: number;
  by_priority: Record<string, number>;
  by_state: Record<string, number>;
  oldest_wait_seconds: number | null;
  estimated_wait_seconds: number | null;
  completed_24h: number;
  failed_24h: number;
  jobs: IJob[];
}

/** Every list route answers a page. */
export interface IPage<T> {
  items: T[];
  total: number;
  next_page_token: string | null;
}

/** The fields of `POST /jobs` (type `task`) that the panel's form sets. */
export interface ITaskSubmit {
  name: string;
  entrypoint: string;
  priority?: number;
  gpu?: number;
}

/** `POST /jobs` answers this (201). */
export interface ISubmitted {
  job_id: string;
  status: JobState;
  message: string;
  job: IJob;
}

/** The error envelope every failed request carries. */
export interface IErrorEnvelope {
  error: {
    code: string;
    message: string;
    details?: unknown;
    trace_id?: string;
  };
}
