export interface JudgeOptions {
  allowTies: boolean;
  allowBothBad: boolean;
  strength: boolean;
  requireRationale: boolean;
}

export interface JudgeConfig {
  campaignId: number;
  campaignName: string;
  nextUrl: string;
  submitUrlTemplate: string;
  skipUrlTemplate: string;
  heartbeatUrlTemplate: string;
  leaseSeconds: number;
  csrfToken: string;
  instructions: string;
  options: JudgeOptions;
}

export type Role = 'user' | 'assistant' | 'system';

export interface ChatMessage {
  role: Role;
  content: string;
}

export interface CandidateResponse {
  id: number;
  content: string;
}

export interface PairItem {
  id: number;
  messages: ChatMessage[];
  responses: [CandidateResponse, CandidateResponse];
}

export interface Assignment {
  id: number;
  expires_at: string;
  item: PairItem;
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

export interface PairwiseSubmission {
  outcome: Outcome;
  preferred_response_id: number | null;
  strength: Strength | null;
  rationale: string;
  time_taken_ms: number;
}
