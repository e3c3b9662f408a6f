/**
 * Audit events. They name who did what to which record and when; they never carry a
 * credential value, an API key or a token.
 */
export type VaultEventType =
  | 'credential.added'
  | 'credential.updated'
  | 'credential.deleted'
  | 'account.created'
  | 'account.updated'
  | 'account.deleted'
  | 'api_key.created'
  | 'api_key.revoked'
  | 'session_token.issued'
  | 'session_token.revoked'
  | 'auth.failed';

/** Who acted: an API key (by its public id), a session token (by its id), or the library caller. */
export type Actor =
  | { type: 'api_key'; keyId: string }
  | { type: 'session_token'; tokenId: string }
  | { type: 'custom'; id?: string }
  | { type: 'system' };

export interface VaultEvent {
  type: VaultEventType;
  /** ISO-8601 time of the event. */
  time: string;
  org?: string;
  environment?: string;
  accountId?: string;
  /** The credential key name, for `credential.*` events. */
  key?: string;
  actor: Actor;
  /** For `auth.failed`: the error code that was answered. */
  reason?: string;
}

export type EventSink = (event: VaultEvent) => void | Promise<void>;

/**
 * Runs a removal with its audit event. When events fail closed the event goes first, so a
 * failing sink stops the removal; otherwise the event follows the removal it reports, and
 * only if something was removed (a truthy result).
 */
export async function auditedRemoval<T extends boolean | number>(
  vault: { failClosedEvents: boolean; emit(event: Omit<VaultEvent, 'time'>): Promise<void> },
  event: Omit<VaultEvent, 'time'>,
  remove: () => Promise<T>,
): Promise<T> {
  if (vault.failClosedEvents) {
    await vault.emit(event);
    return remove();
  }
  const result = await remove();
  if (result) await vault.emit(event);
  return result;
}
