/**
 * The StrataLab panel: a React view of a {@link StrataLabModel}. It shows the
 * server's status, the workers, the queue and the recent jobs, with a form to
 * submit a task and a Cancel button per job. It redraws in place on each
 * refresh (rows are keyed by id), so nothing flickers; when a refresh fails it
 * keeps the last data and says why.
 */
import { ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import { IDisposable } from '@lumino/disposable';
import { Message } from '@lumino/messaging';
import React, { useState } from 'react';

import { describe, formatDuration } from './format';
import { ISnapshot, StrataLabModel } from './model';
import { JobsTable, QueueView, WorkersTable } from './tables';
import { IServerStatus } from './tokens';

/** A Lumino widget that renders the model, and polls only while it is visible. */
export class StrataLabPanel extends ReactWidget {
  constructor(model: StrataLabModel) {
    super();
    this.model = model;
    this.addClass('jp-StrataLab');
  }

  /** The state shown. */
  readonly model: StrataLabModel;

  protected render(): React.ReactElement {
    return (
      <UseSignal signal={this.model.changed} initialArgs={this.model.snapshot}>
        {(_, snapshot) => (
          <Dashboard
            model={this.model}
            snapshot={snapshot ?? this.model.snapshot}
          />
        )}
      </UseSignal>
    );
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    if (this.isVisible) {
      this._startWatching();
    }
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._startWatching();
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this._stopWatching();
  }

  protected onBeforeDetach(msg: Message): void {
    this._stopWatching();
    super.onBeforeDetach(msg);
  }

  dispose(): void {
    this._stopWatching();
    super.dispose();
  }

  private _startWatching(): void {
    this._watch ??= this.model.watch();
  }

  private _stopWatching(): void {
    this._watch?.dispose();
    this._watch = null;
  }

  private _watch: IDisposable | null = null;
}

/** A line under the header: what the last action did. */
interface INotice {
  kind: 'info' | 'error';
  text: string;
}

/** The whole panel body. */
function Dashboard(props: {
  model: StrataLabModel;
  snapshot: ISnapshot;
}): React.ReactElement {
  const { model, snapshot } = props;
  const [notice, setNotice] = useState<INotice | null>(null);
  const now = Date.now();
  return (
    <div className="jp-StrataLab-body">
      <Header snapshot={snapshot} onRefresh={() => void model.refresh()} />
      {snapshot.error && (
        <div
          className={`jp-StrataLab-alert jp-StrataLab-alert-${snapshot.connection}`}
          role="alert"
          data-testid="refresh-error"
        >
          {describe(snapshot.error)}
          {snapshot.error.disconnected && ' — retrying'}
        </div>
      )}
      {notice && (
        <div
          className={`jp-StrataLab-notice jp-StrataLab-notice-${notice.kind}`}
          role={notice.kind === 'error' ? 'alert' : 'status'}
          data-testid="notice"
        >
          <span>{notice.text}</span>
          <button
            className="jp-StrataLab-link"
            aria-label="Dismiss"
            onClick={() => setNotice(null)}
          >
            ×
          </button>
        </div>
      )}
      <Section title="Workers" count={snapshot.workers.length} testId="workers">
        <WorkersTable workers={snapshot.workers} />
      </Section>
      <Section title="Queue" count={snapshot.queue?.depth} testId="queue">
        <QueueView queue={snapshot.queue} now={now} />
      </Section>
      <Section title="Submit a task" testId="submit">
        <SubmitForm model={model} onNotice={setNotice} />
      </Section>
      <Section title="Recent jobs" count={snapshot.jobsTotal} testId="jobs">
        <JobsTable
          jobs={snapshot.jobs}
          now={now}
          onCancel={async job => {
            try {
              await model.cancel(job.id);
              setNotice({
                kind: 'info',
                text: `Cancelled ${job.name} (${job.id})`
              });
            } catch (reason) {
              setNotice({ kind: 'error', text: describe(reason) });
            }
          }}
        />
      </Section>
    </div>
  );
}

/** Title, connection state and the server's status line. */
function Header(props: {
  snapshot: ISnapshot;
  onRefresh: () => void;
}): React.ReactElement {
  const { snapshot, onRefresh } = props;
  const status: IServerStatus | null = snapshot.status;
  const label: Record<ISnapshot['connection'], string> = {
    connecting: 'connecting…',
    connected: 'connected',
    disconnected: 'disconnected',
    error: 'error'
  };
  return (
    <header className="jp-StrataLab-header">
      <div className="jp-StrataLab-title">
        <h2>StrataLab</h2>
        <span
          className={`jp-StrataLab-connection jp-StrataLab-connection-${snapshot.connection}`}
          data-testid="connection"
          data-connection={snapshot.connection}
          title={
            snapshot.updatedAt
              ? `updated ${snapshot.updatedAt.toLocaleTimeString()}`
              : ''
          }
        >
          {label[snapshot.connection]}
        </span>
        <button
          className="jp-StrataLab-link"
          onClick={onRefresh}
          title="Refresh now"
        >
          ↻
        </button>
      </div>
      {status && (
        <dl className="jp-StrataLab-status" data-testid="status">
          <Fact name="version" value={status.version} />
          <Fact name="uptime" value={formatDuration(status.uptime_s)} />
          <Fact name="database" value={status.database} />
          <Fact
            name="cluster"
            value={
              status.embedded_cluster
                ? 'embedded'
                : (status.dask_address ?? '—')
            }
          />
          {status.dask_dashboard && (
            <Fact
              name="Dask"
              value={
                <a
                  href={status.dask_dashboard}
                  target="_blank"
                  rel="noreferrer"
                >
                  dashboard ↗
                </a>
              }
            />
          )}
        </dl>
      )}
    </header>
  );
}

function Fact(props: {
  name: string;
  value: React.ReactNode;
}): React.ReactElement {
  return (
    <div className="jp-StrataLab-fact">
      <dt>{props.name}</dt>
      <dd>{props.value}</dd>
    </div>
  );
}

function Section(props: {
  title: string;
  count?: number;
  testId: string;
  children: React.ReactNode;
}): React.ReactElement {
  return (
    <section className="jp-StrataLab-section" data-testid={props.testId}>
      <h3>
        {props.title}
        {props.count !== undefined && (
          <span className="jp-StrataLab-count">{props.count}</span>
        )}
      </h3>
      {props.children}
    </section>
  );
}

function SubmitForm(props: {
  model: StrataLabModel;
  onNotice: (notice: INotice) => void;
}): React.ReactElement {
  const [name, setName] = useState('hello');
  const [entrypoint, setEntrypoint] = useState('');
  const [priority, setPriority] = useState(5);
  const [gpu, setGpu] = useState(0);
  const [busy, setBusy] = useState(false);

  const submit = async (event: React.FormEvent) => {
    event.preventDefault();
    setBusy(true);
    try {
      const out = await props.model.submit({ name, entrypoint, priority, gpu });
      props.onNotice({
        kind: 'info',
        text: `Submitted ${name} as ${out.job_id}`
      });
    } catch (reason) {
      props.onNotice({ kind: 'error', text: describe(reason) });
    } finally {
      setBusy(false);
    }
  };

  return (
    <form
      className="jp-StrataLab-form"
      onSubmit={submit}
      data-testid="submit-form"
    >
      <label>
        name
        <input
          name="name"
          value={name}
          required
          onChange={e => setName(e.target.value)}
          placeholder="hello"
        />
      </label>
      <label className="jp-StrataLab-grow">
        command or .py file
        <input
          name="entrypoint"
          value={entrypoint}
          required
          onChange={e => setEntrypoint(e.target.value)}
          placeholder="python train.py --epochs 3"
        />
      </label>
      <label>
        priority
        <input
          name="priority"
          type="number"
          min={1}
          max={10}
          value={priority}
          onChange={e => setPriority(Number(e.target.value))}
        />
      </label>
      <label>
        GPUs
        <input
          name="gpu"
          type="number"
          min={0}
          value={gpu}
          onChange={e => setGpu(Number(e.target.value))}
        />
      </label>
      <button
        type="submit"
        className="jp-mod-styled jp-mod-accept"
        disabled={busy}
      >
        {busy ? 'Submitting…' : 'Submit'}
      </button>
    </form>
  );
}
