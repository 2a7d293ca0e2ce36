/**
 * The panel's state: one poll of the server (status, workers, queue, recent
 * jobs) shared by every open view, and the two actions (submit, cancel).
 * Views render {@link StrataLabModel.snapshot} and redraw on
 * {@link StrataLabModel.changed}; they never talk to the server themselves.
 */
import { ServerConnection } from '@jupyterlab/services';
import { IDisposable } from '@lumino/disposable';
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { ApiError, requestAPI } from './handler';
import {
  IJob,
  IPage,
  IQueue,
  IServerStatus,
  ISubmitted,
  ITaskSubmit,
  IWorker
} from './tokens';

/**
 * How the last refresh went: `connecting` before the first answer,
 * `disconnected` when the server did not answer, `error` when it answered
 * with an error envelope.
 */
export type Connection = 'connecting' | 'connected' | 'disconnected' | 'error';

/** Everything a view shows. Data from the last good refresh is kept on errors. */
export interface ISnapshot {
  /** How the last refresh went. */
  readonly connection: Connection;
  /** Why the last refresh failed; `null` after a good one. */
  readonly error: ApiError | null;
  /** `GET /status`, or `null` before the first answer. */
  readonly status: IServerStatus | null;
  /** `GET /workers` items. */
  readonly workers: readonly IWorker[];
  /** `GET /queue`, or `null` before the first answer. */
  readonly queue: IQueue | null;
  /** The newest jobs, newest first. */
  readonly jobs: readonly IJob[];
  /** How many jobs the caller has in all. */
  readonly jobsTotal: number;
  /** When the last good refresh ended. */
  readonly updatedAt: Date | null;
}

/** Polls the StrataLab API while at least one view is visible. */
export class StrataLabModel implements IDisposable {
  constructor(options: StrataLabModel.IOptions = {}) {
    this._settings = options.serverSettings ?? ServerConnection.makeSettings();
    this._jobsPageSize = options.jobsPageSize ?? 20;
    this._poll = new Poll({
      auto: false,
      factory: () => this._tick(),
      frequency: {
        interval: options.interval ?? 2000,
        backoff: true,
        max: 10_000
      },
      name: 'stratalab:model',
      standby: 'when-hidden'
    });
  }

  /** Emitted after every refresh, good or bad, and after every action. */
  get changed(): ISignal<this, ISnapshot> {
    return this._changed;
  }

  /** The current state. */
  get snapshot(): ISnapshot {
    return this._snapshot;
  }

  /** Milliseconds between two refreshes. */
  get interval(): number {
    return this._poll.frequency.interval;
  }
  set interval(value: number) {
    this._poll.frequency = { ...this._poll.frequency, interval: value };
  }

  get isDisposed(): boolean {
    return this._poll.isDisposed;
  }

  /**
   * Declare a view that wants live data. Polling runs while at least one
   * handle is held; dispose of the handle when the view is hidden.
   */
  watch(): IDisposable {
    this._watchers += 1;
    if (this._watchers === 1) {
      void this._poll.start();
      void this._poll.refresh();
    }
    let done = false;
    return {
      get isDisposed() {
        return done;
      },
      dispose: () => {
        if (done) {
          return;
        }
        done = true;
        this._watchers -= 1;
        if (this._watchers === 0 && !this._poll.isDisposed) {
          void this._poll.stop();
        }
      }
    };
  }

  /** Refresh now, without waiting for the next tick. */
  refresh(): Promise<void> {
    return this._poll.refresh();
  }

  /**
   * Submit a task job.
   *
   * @throws {ApiError} with the server's code and message when it refuses.
   */
  async submit(request: ITaskSubmit): Promise<ISubmitted> {
    const out = await requestAPI<ISubmitted>(
      'jobs',
      { method: 'POST', body: JSON.stringify({ type: 'task', ...request }) },
      this._settings
    );
    void this._poll.refresh();
    return out;
  }

  /**
   * Cancel a job; a running one has its processes killed.
   *
   * @throws {ApiError} e.g. `CANNOT_CANCEL` for a job that already ended.
   */
  async cancel(jobId: string): Promise<IJob> {
    const out = await requestAPI<IJob>(
      `jobs/${encodeURIComponent(jobId)}/cancel`,
      {
        method: 'POST',
        body: JSON.stringify({ reason: 'cancelled from JupyterLab' })
      },
      this._settings
    );
    void this._poll.refresh();
    return out;
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._poll.dispose();
    Signal.clearData(this);
  }

  /** One refresh: all four reads at once; a failure keeps the last data. */
  private async _tick(): Promise<void> {
    const seq = ++this._issued;
    const get = <T>(endPoint: string) =>
      requestAPI<T>(endPoint, {}, this._settings);
    try {
      const [status, workers, queue, jobs] = await Promise.all([
        get<IServerStatus>('status'),
        get<IPage<IWorker>>('workers?page_size=1000'),
        get<IQueue>('queue'),
        get<IPage<IJob>>(
          `jobs?page_size=${this._jobsPageSize}&order_by=-created_at`
        )
      ]);
      if (seq < this._applied) {
        return; // a later refresh already answered
      }
      this._applied = seq;
      this._set({
        connection: 'connected',
        error: null,
        status,
        workers: workers.items,
        queue,
        jobs: jobs.items,
        jobsTotal: jobs.total,
        updatedAt: new Date()
      });
    } catch (reason) {
      const error =
        reason instanceof ApiError
          ? reason
          : new ApiError('CLIENT_ERROR', String(reason));
      if (seq >= this._applied) {
        this._applied = seq;
        this._set({
          ...this._snapshot,
          connection: error.disconnected ? 'disconnected' : 'error',
          error
        });
      }
      if (error.disconnected) {
        throw error; // let the poll back off until the server answers again
      }
    }
  }

  private _set(snapshot: ISnapshot): void {
    this._snapshot = snapshot;
    this._changed.emit(snapshot);
  }

  private _settings: ServerConnection.ISettings;
  private _jobsPageSize: number;
  private _poll: Poll;
  private _watchers = 0;
  private _issued = 0;
  private _applied = 0;
  private _snapshot: ISnapshot = {
    connection: 'connecting',
    error: null,
    status: null,
    workers: [],
    queue: null,
    jobs: [],
    jobsTotal: 0,
    updatedAt: null
  };
  private _changed = new Signal<this, ISnapshot>(this);
}

/** Options of {@link StrataLabModel}. */
export namespace StrataLabModel {
  export interface IOptions {
    /** The Jupyter server connection; the app's `serviceManager.serverSettings`. */
    serverSettings?: ServerConnection.ISettings;
    /** Milliseconds between refreshes (default 2000). */
    interval?: number;
    /** How many recent jobs to show (default 20). */
    jobsPageSize?: number;
  }
}
