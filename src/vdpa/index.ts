export * from './constants';
export * from './messages';
export * from './client';
export * from './block-device';
