export type Kind = 'pairwise' | 'ranking' | 'rating';

export interface JudgeOptions {
  allowTies: boolean;
  allowBothBad: boolean;
  strength: boolean;
  requireRationale: boolean;
  allowEditing: boolean;
}

export interface Scale {
  min: number;
  max: number;
  /** Scale point (as a string) -> label, e.g. {"1": "Poor", "5": "Excellent"}. */
  labels: Record<string, string>;
}

export interface Criterion {
  name: string;
  label: string;
  description: string;
  scale: Scale;
}

export interface FlagReason {
  value: string;
  label: string;
}

export interface JudgeConfig {
  campaignId: number;
  campaignName: string;
  kind: Kind;
  nextUrl: string;
  submitUrlTemplate: string;
  skipUrlTemplate: string;
  heartbeatUrlTemplate: string;
  leaseSeconds: number;
  csrfToken: string;
  instructions: string;
  options: JudgeOptions;
  criteria: Criterion[];
  /** Absent on servers that predate flags: then no flag checkboxes are shown or sent. */
  flagReasons: FlagReason[] | null;
}

export type Role = 'user' | 'assistant' | 'system';

export interface ChatMessage {
  role: Role;
  content: string;
}

/**
 * How this assignment names a response: an opaque handle, valid for this assignment only.
 * It carries no order and is not the database id; send it back as given.
 */
export type ResponseId = string;

export interface CandidateResponse {
  id: ResponseId;
  content: string;
}

export interface Item {
  id: number;
  messages: ChatMessage[];
  /** 2 (pairwise), 2–9 (ranking) or 1–9 (rating), in display order. */
  responses: CandidateResponse[];
}

export interface Assignment {
  id: number;
  expires_at: string;
  item: Item;
}

export interface Progress {
  done: number;
  total: number;
}

export interface NextResponse {
  assignment: Assignment | null;
  progress: Progress;
}

export type Outcome = 'preferred' | 'tie' | 'both_bad';
export type Strength = 1 | 2 | 3;

/** Fields every kind sends. */
export interface CommonSubmission {
  rationale: string;
  time_taken_ms: number;
  flags?: string[];
  edited_response?: string;
}

export interface PairwiseSubmission extends CommonSubmission {
  outcome: Outcome;
  preferred_response_id: ResponseId | null;
  strength: Strength | null;
  criteria?: Record<string, ResponseId | 'tie'>;
}

export interface RankingSubmission extends CommonSubmission {
  outcome: 'ranked';
  ranking: ResponseId[][];
}

export interface RatingSubmission extends CommonSubmission {
  outcome: 'rated';
  /** Keyed by response handle. */
  ratings: Record<ResponseId, Record<string, number>>;
}
