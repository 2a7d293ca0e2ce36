/**
 * The one way the panel talks to the server: {@link requestAPI}, a typed
 * wrapper around `ServerConnection.makeRequest`, so that the Jupyter token or
 * cookie and the XSRF header go with every request. Whatever goes wrong comes
 * back as an {@link ApiError}; nothing else is thrown.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { IErrorEnvelope } from './tokens';

/** Where the API lives, relative to the Jupyter server's base URL. */
export const API_PATH = 'stratalab/api/v1';

/** The code of an {@link ApiError} when the server did not answer at all. */
export const DISCONNECTED = 'DISCONNECTED';

/** How long a request may take before the server counts as not answering. */
const TIMEOUT_MS = 15_000;

/**
 * A failed request: the server's error envelope (`code`, `message`,
 * `trace_id`), or {@link DISCONNECTED} when no answer came.
 */
export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number = 0,
    readonly traceId: string | null = null,
    readonly details: unknown = null
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** Whether the server did not answer (as opposed to answering an error). */
  get disconnected(): boolean {
    return this.code === DISCONNECTED;
  }

  /** `CODE: message`, as the panel shows it. */
  toString(): string {
    return `${this.code}: ${this.message}`;
  }
}

/**
 * Call the StrataLab API and return its JSON body.
 *
 * @param endPoint - path under `stratalab/api/v1`, with its query string.
 * @param init - fetch options; a JSON `body` gets its `Content-Type`.
 * @param settings - the server connection (the app's, normally).
 * @returns the parsed body (`undefined` for an empty one, e.g. a 204).
 * @throws {ApiError} on a network failure, a time-out or any non-2xx answer.
 */
export async function requestAPI<T>(
  endPoint: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, API_PATH, endPoint);
  const headers = new Headers(init.headers);
  headers.set('Accept', 'application/json');
  if (init.body !== undefined && !headers.has('Content-Type')) {
    headers.set('Content-Type', 'application/json');
  }
  const signal = init.signal ?? AbortSignal.timeout(TIMEOUT_MS);

  let response: Response;
  let text: string;
  try {
    response = await ServerConnection.makeRequest(
      url,
      { ...init, headers, signal },
      settings
    );
    text = await response.text();
  } catch {
    const reason = signal.aborted
      ? `no answer within ${TIMEOUT_MS / 1000} s`
      : 'the server does not answer';
    throw new ApiError(DISCONNECTED, reason);
  }

  let body: unknown = undefined;
  if (text.length > 0) {
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
  }
  if (!response.ok) {
    throw Private.toApiError(response, body);
  }
  if (text.length > 0 && body === undefined) {
    throw new ApiError(
      'BAD_RESPONSE',
      `the server answered ${response.status} with a body that is not JSON`,
      response.status
    );
  }
  return body as T;
}

namespace Private {
  /** The error a non-2xx response stands for. */
  export function toApiError(response: Response, body: unknown): ApiError {
    if (isEnvelope(body)) {
      const e = body.error;
      return new ApiError(
        e.code,
        e.message,
        response.status,
        e.trace_id ?? null,
        e.details ?? null
      );
    }
    // Not ours: a proxy, or the Jupyter server before our handlers ran.
    const reason = response.statusText || 'no reason given';
    return new ApiError(`HTTP_${response.status}`, reason, response.status);
  }

  /** Whether `body` is the API's error envelope. */
  function isEnvelope(body: unknown): body is IErrorEnvelope {
    if (typeof body !== 'object' || body === null || !('error' in body)) {
      return false;
    }
    const error = (body as { error: unknown }).error;
    return (
      typeof error === 'object' &&
      error !== null &&
      typeof (error as { code?: unknown }).code === 'string' &&
      typeof (error as { message?: unknown }).message === 'string'
    );
  }
}
