/** Small JSON API client shared by the judging pages. */

export class ApiError extends Error {
  readonly status: number;
  readonly extra: Record<string, unknown>;

  constructor(message: string, status: number, extra: Record<string, unknown> = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.extra = extra;
  }
}

export interface ApiClientOptions {
  csrfToken: string;
}

export class ApiClient {
  private readonly csrfToken: string;

  constructor(options: ApiClientOptions) {
    this.csrfToken = options.csrfToken;
  }

  /** POST a JSON body; resolve with the parsed JSON on 2xx, throw ApiError otherwise. */
  async post<T>(url: string, body: unknown = {}): Promise<T> {
    let response: Response;
    try {
      response = await fetch(url, {
        method: 'POST',
        credentials: 'same-origin',
        headers: {
          'Content-Type': 'application/json',
          Accept: 'application/json',
          'X-CSRFToken': this.csrfToken,
          'X-Requested-With': 'XMLHttpRequest',
        },
        body: JSON.stringify(body ?? {}),
      });
    } catch {
      throw new ApiError('Network error — check your connection and try again.', 0);
    }

    const isJson = (response.headers.get('Content-Type') ?? '').includes('json');
    let data: unknown = null;
    if (isJson) {
      try {
        data = await response.json();
      } catch {
        data = null;
      }
    }

    if (response.ok) {
      if (!isJson || response.redirected) {
        throw new ApiError(
          'Unexpected response from the server. Your session may have expired — reload the page.',
          response.status,
        );
      }
      return data as T;
    }

    const payload = (data ?? {}) as { message?: unknown; detail?: unknown; extra?: unknown };
    const message =
      typeof payload.message === 'string' && payload.message
        ? payload.message
        : typeof payload.detail === 'string' && payload.detail
          ? payload.detail
          : defaultMessage(response.status);
    const extra =
      payload.extra && typeof payload.extra === 'object' ? (payload.extra as Record<string, unknown>) : {};
    throw new ApiError(message, response.status, extra);
  }
}

function defaultMessage(status: number): string {
  switch (status) {
    case 403:
      return 'You are not allowed to do that. Your session may have expired — reload the page.';
    case 404:
      return 'Not found. This item may no longer be available.';
    case 409:
      return 'This item was changed or reassigned. Load the next item.';
    default:
      return status >= 500 ? `Server error (${status}). Please try again.` : `Request failed (${status}).`;
  }
}

/** Replace `{id}` in a URL template. */
export function fillUrl(template: string, id: number | string): string {
  return template.replace('{id}', encodeURIComponent(String(id)));
}

export function errorMessage(err: unknown): string {
  if (err instanceof ApiError) return err.message;
  if (err instanceof Error) return err.message;
  return 'Something went wrong.';
}
