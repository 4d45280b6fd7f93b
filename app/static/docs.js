// Swagger UI on the service's own OpenAPI document (swagger-ui-bundle's files, served by the app).
window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger', deepLinking: true });
