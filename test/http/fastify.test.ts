import { credentialApiSuite } from './credential-api.suite.js';
import { publicApiSuite } from './public-api.suite.js';

credentialApiSuite('fastify');
publicApiSuite('fastify');
