/**
 * The data-prep pipeline's shared types. A metadata line becomes either an `Item` (normalised,
 * validated, with its MAIN image URL chosen) or a `RejectRecord` (core) with a stable reason code.
 */
import type { ShardRow } from '@smolrate/core';

/** A shard row before its image is fetched (the URL is chosen, the bytes come later). */
export interface Item extends Omit<ShardRow, 'image'> {
  /** Where it came from, for rejects found later (image stage). */
  source: string;
  line: number;
}

/**
 * Stable reject reason codes (manifest counts.rejected.byReason keys). `not_selected` items
 * (dropped by the top-K / bottom-K sampling) are counted but not listed in rejects.jsonl — at the
 * real scale that would be tens of millions of lines; every other reject is listed.
 */
export const REJECT_REASONS = {
  malformedJson: 'malformed_json',
  notAnObject: 'not_an_object',
  missingParentAsin: 'missing_parent_asin',
  badField: 'bad_field_type',
  noRating: 'no_average_rating',
  ratingOutOfRange: 'average_rating_out_of_range',
  noRatingNumber: 'no_rating_number',
  tooFewRatings: 'too_few_ratings',
  noImage: 'no_main_image',
  duplicate: 'duplicate_parent_asin',
  notSelected: 'not_selected',
  categoryExcluded: 'category_excluded',
  /** The rest of an input file could not be read (a gzip stream that ends early or is corrupt). */
  truncatedInput: 'truncated_input',
  imageFetch: 'image_fetch_failed',
  imageNotFound: 'image_not_found',
  imageTooLarge: 'image_too_large',
  imageEmpty: 'image_empty',
  imageBomb: 'image_bomb',
  imageCorrupt: 'image_corrupt',
  imageUnsupported: 'image_unsupported',
} as const;

export type RejectReason = (typeof REJECT_REASONS)[keyof typeof REJECT_REASONS];
